"""Every figure the notebooks show, made from a real running lab (`labkit plots export DIR`).

Each recipe drives the system exactly as its notebook does (sends commands, runs sagas,
replays the log) and returns the figure; `export_all` saves them all as PNGs, for slides and
for instructors. Without a lab it starts a fresh local one in a temporary directory and
removes it afterwards, so the student's own lab data is never touched.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.workbook import plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from labkit.lab import Lab


# ---- small readers the notebooks use too -----------------------------------------------------------
def users_by_status(lab: Lab) -> dict[str, int]:
    """{"active": n, "inactive": m} from query-service's user-stats view (the read model)."""
    s = lab.query("user-stats")
    return {"active": int(s["active_users"]),
            "inactive": int(s["total_users"]) - int(s["active_users"])}


def create_users(lab: Lab, n: int, prefix: str = "Student") -> list[dict[str, Any]]:
    """Send `n` create-user commands; return the accepted responses (with `position`)."""
    tag = uuid.uuid4().hex[:6]
    return [lab.command("create-user", name=f"{prefix} {i + 1}",
                        email=f"{prefix.lower()}{i + 1}.{tag}@example.com") for i in range(n)]


# ---- recipes: one per figure a notebook shows --------------------------------------------------------
def service_map(lab: Lab | None = None) -> Figure:
    """01-networking: who calls whom (labkit.lab.topology.call_graph())."""
    from labkit.lab.topology import call_graph

    return plots.service_map(call_graph())


def projection_lag(lab: Lab, commands: int = 20) -> Figure:
    """03-cqrs: per command, how long until query-service shows it."""
    return plots.projection_lag(lab.projection_lag(commands))


def users_by_status_change(lab: Lab, deactivate: int = 2) -> Figure:
    """03-cqrs: the users view before and after deactivating some users."""
    created = create_users(lab, deactivate, prefix="Leaver")
    lab.wait_for_projection(created[-1]["position"])
    before = users_by_status(lab)
    last = 0
    for c in created:
        last = lab.command("deactivate-user", user_id=c["user_id"], reason="figure")["position"]
    lab.wait_for_projection(last, "user-stats")
    return plots.projection_state(before, users_by_status(lab),
                                  f"사용자 상태별 수: 비활성화 명령 {deactivate}개 전후 (조회 모델)",
                                  xlabel="사용자 상태 (status)", ylabel="사용자 수")


@contextlib.contextmanager
def processor_paused(lab: Lab) -> Iterator[None]:
    """Stop the following event-processor (a replay must not race it); start it again after."""
    with contextlib.suppress(Exception):  # already stopped is fine
        lab.kill("event-processor")
    try:
        yield
    finally:
        lab.up(progress=False)


def replay(lab: Lab, runs: int = 3, events: int = 200) -> tuple[Figure, Figure]:
    """04-event-sourcing: events/s of `runs` replays, and the view before/after replaying."""
    created = create_users(lab, events, prefix="Replay")
    lab.wait_for_projection(created[-1]["position"])
    before = users_by_status(lab)
    with processor_paused(lab):
        stats = [lab.replay() for _ in range(runs)]
    lab.wait_for_projection(created[-1]["position"])
    after = users_by_status(lab)
    return (plots.replay_throughput(stats),
            plots.projection_state(before, after, "재생(replay) 전후의 사용자 조회 모델: 같아야 한다",
                                   xlabel="사용자 상태 (status)", ylabel="사용자 수"))


def sagas(lab: Lab, scenarios: tuple[str, ...] = ("happy", "payment-declined")
          ) -> tuple[Figure, Figure, Figure]:
    """02-saga: the timeline of real sagas, and balances / stock before and after them."""
    from labkit.lab.scenarios import ALICE, BOB, POOR_BALANCE, ensure_customer

    ensure_customer(lab, ALICE)  # what the scenarios would do; done first so "before" has them
    ensure_customer(lab, BOB, POOR_BALANCE)
    accounts, stock = lab.accounts(), lab.stock()
    ids = [lab.fire(name) for name in scenarios]
    lab.saga.wait_all(ids)
    gantt = plots.saga_gantt(lab.saga.timeline(ids))
    balances = plots.before_after(accounts, lab.accounts(), "account_id", "balance",
                                  "계좌 잔액: 사가 전후 (돈은 계좌 사이에서만 이동)", ylabel="잔액 (센트)")
    stock_fig = plots.before_after(stock, lab.stock(), "sku", "available",
                                   "재고: 사가 전후 (보상되면 재고가 돌아온다)", ylabel="가용 재고")
    return gantt, balances, stock_fig


def latest_sagas(lab: Lab, n: int = 5, title: str | None = None) -> Figure:
    """02-saga: the Gantt chart of the `n` most recent sagas, whoever placed them (the order
    form, the failure buttons, `lab.fire`): run it again after placing an order."""
    return plots.saga_gantt(lab.saga.latest(n), align="start",
                            title=title or f"최근 사가 {n}개 (가장 최근이 맨 아래)")


def orchestrator_gap(lab: Lab, saga_id: str) -> tuple[Any, Any] | None:
    """(last event of the first orchestrator, first event of the next) of a saga two
    orchestrator processes drove: the time nobody drove it. None if one process did it all."""
    log = lab.events(stream=f"saga-{saga_id}")
    owners = log["metadata"].map(lambda m: m.get("owner")).iloc[1:]  # 0: SagaStarted
    drivers = list(dict.fromkeys(o for o in owners if o))
    if len(drivers) < 2:
        return None
    recorded = log["recorded_at"].iloc[1:]
    return recorded[owners == drivers[0]].max(), recorded[owners == drivers[1]].min()


def crash_gantt(lab: Lab, saga_id: str, title: str = "오케스트레이터 크래시: 새 프로세스가 "
                                                    "스트림을 읽고 이어서 끝낸다") -> Figure:
    """02-saga: one saga's Gantt chart with the time no orchestrator ran shaded."""
    gap = orchestrator_gap(lab, saga_id)
    gaps = [(*gap, "오케스트레이터 없음 (SIGKILL 뒤 새 프로세스가 뜰 때까지)")] if gap else []
    return plots.saga_gantt(lab.saga.timeline(saga_id), title=title, gaps=gaps)


# ---- export -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _temporary_lab() -> Iterator[Lab]:
    from ecommerce.config import Settings
    from labkit.lab import Lab

    with tempfile.TemporaryDirectory(prefix="labkit-figures-") as tmp:
        d = Path(tmp) / "data"
        lab = Lab(replace(Settings.from_env(), mode="local", data_dir=d, events_db=d / "events.db",
                          read_db=d / "read.db"), gateway_port=0)  # never the student's 8080
        try:
            lab.up(progress=False, faults=True)  # the failure notebooks' figures inject faults
            yield lab
        finally:
            lab.reset()


def export_all(out_dir: str | Path, lab: Lab | None = None, *, dpi: int = 120,
               warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[Path]:
    """Make every notebook figure from a real lab and save it as `<out_dir>/<nb>-<name>.png`.

    `lab`: a running lab to use; None starts a temporary local lab (and removes it after).
    A figure that cannot be made (e.g. a part of the system missing) is reported with `warn`
    and skipped; the others are still written. Returns the files written.
    """
    if lab is None:
        with _temporary_lab() as tmp_lab:
            return export_all(out_dir, tmp_lab, dpi=dpi, warn=warn)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, make: Callable[[], Figure | tuple[Figure, ...]], names: tuple[str, ...] = ()
             ) -> None:
        try:
            figs = make()
        except Exception as exc:  # report and go on with the other figures
            warn(f"skipped {name}: {type(exc).__name__}: {exc}")
            return
        figs = figs if isinstance(figs, tuple) else (figs,)
        for fig, fname in zip(figs, names or (name,), strict=True):
            written.append(plots.save(fig, out / f"{fname}.png", dpi=dpi))

    save("01-service-map", lambda: service_map(lab))
    save("02-saga", lambda: sagas(lab), ("02-saga-gantt", "02-saga-balances", "02-saga-stock"))
    save("02-saga-crash", lambda: crash_gantt(lab, lab.fire("orchestrator-crash", wait=True)))
    save("02-latest-sagas", lambda: latest_sagas(lab))
    save("03-projection-lag", lambda: projection_lag(lab))
    save("03-users-by-status", lambda: users_by_status_change(lab))
    save("04-replay", lambda: replay(lab), ("04-replay-throughput", "04-replay-state"))
    return written
