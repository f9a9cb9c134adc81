"""`labkit chaos`: many sagas under random faults, then the invariants, against real processes.

Each run places one order as a saga with faults drawn from a seeded random generator:

- participant errors (503 for the next 1-3 requests to a random participant),
- short delays (50-400 ms) and long ones (longer than the orchestrator's request timeout:
  timeouts, retries, maybe the step's deadline and compensation),
- payment declines, customers who cannot pay, unknown and deactivated users, orders larger
  than the stock,
- participant crashes (the process exits on its next request; it is restarted, as Kubernetes
  would),
- orchestrator kills at a random point of the saga (SIGKILL right after a chosen event; a new
  orchestrator resumes every unfinished saga),
- attackers and careless clients calling the participants directly (`ATTACKS`, drawn from their
  own generator so the fault plans of a seed stay the same): a refund or release of the order
  once its saga ended (or while it runs), the saga's own charge replayed with its key, that key
  reused for another amount, an order with a price of 1 cent. What the system must refuse and
  did not is counted in `attacks_accepted`; the invariants must hold whatever was accepted.

`concurrency` runs are in flight at once, so a fault armed for one run may hit another: the
plan (which faults, which customer, which order) is fixed by the seed, the interleaving is not.
After every run has been placed the runner waits for every saga to end, clears the faults,
and checks the invariants (`labkit.ops.invariants`). Stock is finite, so by default the runs are
split into rounds, each in a fresh temporary lab (never the student's).

The last line printed is JSON: `{runs, completed, compensated, stuck, violations, seconds, ...}`.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ecommerce.domain import saga as s
from ecommerce.services.registry import PARTICIPANTS
from ecommerce.waiting import WaitTimeout, wait_until

RICH, POOR, INACTIVE = "chaos-rich", "chaos-poor", "chaos-inactive"
#: SKUs the orders draw from, weighted by how much stock the catalogue has.
SKUS = (("MOUSE-WL", 10), ("KEYBOARD-MX", 5), ("MONITOR-27", 2), ("LAPTOP-14", 1),
        ("HEADSET-BT", 1))
#: Orchestrator crash points: after one of these events of one of these steps.
CRASH_EVENTS = (s.STEP_STARTED, s.STEP_SUCCEEDED, s.STEP_RETRIED, s.STEP_FAILED)
COMP_CRASH_EVENTS = (s.COMPENSATION_STARTED, s.COMPENSATION_SUCCEEDED)
#: Direct calls of an attacker (or a careless client) on a run's order; see `attack`.
ATTACKS = ("refund-ended", "release-ended", "compensate-ended", "refund-midflight",
           "replayed-key", "reused-key", "price-tamper")


@dataclass(frozen=True)
class Fault:
    service: str
    mode: str
    times: int = 1
    seconds: float | None = None
    path: str | None = None


@dataclass
class RunPlan:
    n: int
    user: str
    lines: list[tuple[str, int]]
    faults: list[Fault] = field(default_factory=list)
    crash_after: str | None = None
    attacks: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        out = [f"{f.mode}:{f.service}" for f in self.faults]
        if self.crash_after:
            out.append("orchestrator-kill")
        return out + [f"attack:{a}" for a in self.attacks]


def plan_runs(runs: int, seed: int, timeout: float = s.RetryPolicy().request_timeout,
              participant_crashes: bool = True, attacks: float = 0.3) -> list[RunPlan]:
    """The fault plan of every run, from the seed alone (`participant_crashes=False` leaves
    out the `crash` faults, for a lab whose processes nobody restarts). `attacks`: the share
    of runs that also get 1-2 attacks (`ATTACKS`), drawn from a generator of their own."""
    rng = random.Random(seed)
    attack_rng = random.Random(f"attacks:{seed}")
    names, weights = [k for k, _ in SKUS], [w for _, w in SKUS]
    plans = []
    for n in range(runs):
        who = rng.random()
        user = (RICH if who < 0.80 else POOR if who < 0.88 else INACTIVE if who < 0.93
                else f"chaos-ghost-{rng.randrange(10**6)}")
        chosen = rng.choices(names, weights)
        if rng.random() < 0.3:
            others = [k for k in names if k != chosen[0]]
            chosen += rng.choices(others, [w for k, w in SKUS if k != chosen[0]])
        lines = [(sku, 999 if rng.random() < 0.05 else rng.randint(1, 2)) for sku in chosen]
        faults: list[Fault] = []
        if rng.random() < 0.25:
            faults.append(Fault(rng.choice(PARTICIPANTS), "error", rng.randint(1, 3)))
        if rng.random() < 0.15:
            faults.append(Fault(rng.choice(PARTICIPANTS), "delay", rng.randint(1, 2),
                                round(rng.uniform(0.05, 0.4), 3)))
        if rng.random() < 0.05:
            # 1-6 timeouts in a row: a few retries, or (5+) the step's deadline and compensation
            faults.append(Fault(rng.choice(PARTICIPANTS), "delay", rng.randint(1, 6),
                                round(timeout + rng.uniform(0.1, 0.6), 3)))
        if rng.random() < 0.07:
            faults.append(Fault("payment-service", "decline", 1))
        crash_roll, crash_service = rng.random(), rng.choice(PARTICIPANTS)
        if crash_roll < 0.02 and participant_crashes:
            faults.append(Fault(crash_service, "crash", 1))
        crash = None
        if rng.random() < 0.10:
            if rng.random() < 0.6:  # points every saga reaches
                crash = f"{rng.randint(1, 5)}:{rng.choice(CRASH_EVENTS[:2])}"
            elif rng.random() < 0.5:  # points only retried or failed steps reach
                crash = f"{rng.randint(1, 5)}:{rng.choice(CRASH_EVENTS[2:])}"
            else:
                comp = rng.choice(["cancel_order", "release_stock", "refund_payment"])
                crash = f"{comp}:{rng.choice(COMP_CRASH_EVENTS)}"
        chosen_attacks = (attack_rng.sample(ATTACKS, attack_rng.randint(1, 2))
                          if attack_rng.random() < attacks else [])
        plans.append(RunPlan(n, user, lines, faults, crash, chosen_attacks))
    return plans


def _ok(r: Any) -> bool:
    return 200 <= r.status_code < 300


def attack(lab: Any, kind: str, saga_id: str, order_id: str, state: s.SagaState | None) -> bool:
    """One direct call on the run's order; True when the system let through what it must
    refuse (a refund or release of a CONFIRMED order, a key reused for another request that
    was not refused, a client's own price that was not refused)."""
    confirmed = state is not None and state.status == "completed"
    pay, inv = lab.http("payment-service"), lab.http("inventory-service")
    if kind in ("refund-ended", "refund-midflight"):
        r = pay.post(f"/api/payments/{order_id}/refund", json={})
        return confirmed and _ok(r)
    if kind == "compensate-ended":
        r = pay.post("/api/payments/compensate", json={"order_id": order_id})
        return confirmed and _ok(r)
    if kind == "release-ended":
        r = inv.post(f"/api/inventory/reservations/{order_id}/release", json={})
        return confirmed and _ok(r)
    charged = state is not None and state.actions[
        s.STEP_NAMES.index("charge_payment")].status == "succeeded"
    if kind in ("replayed-key", "reused-key") and state is not None and charged:
        # Only where the saga used its key: an unused key is simply a new request (a charge of
        # a cancelled or unknown order, which payment-service refuses: docs/api.md).
        request = s.request_for("charge_payment", state)
        body = dict(request.body or {})
        if kind == "reused-key":
            body["amount"] = max(1, int(body["amount"]) - 1)
        r = pay.post(request.path, json=body,
                     headers={"Idempotency-Key": request.idempotency_key})
        return kind == "reused-key" and _ok(r)  # an injected 503 is not an acceptance
    if kind == "price-tamper":
        r = lab.http("command-service").post("/api/commands/place-order", json={
            "user_id": RICH, "lines": [{"sku": "LAPTOP-14", "quantity": 1, "price": 1}]})
        return _ok(r)
    return False


class Supervisor:
    """Restarts lab processes that died (a crash fault, an orchestrator kill), like Kubernetes
    restarting a pod. Local mode only."""

    def __init__(self, lab: Any, interval: float = 0.2) -> None:
        self.lab, self.interval = lab, interval
        self.restarts: Counter = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="chaos-supervisor")
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.check()

    def check(self) -> None:
        try:
            # "not started" too: a restart that failed (the process died again during start-up,
            # e.g. at another saga's crash point) is forgotten by the all-or-nothing `up`.
            dead = [r["service"] for r in self.lab.runtime.status()
                    if r["status"] in ("stopped", "not started")]
            if dead:
                self.restarts.update(dead)
                self.lab.runtime.up(wait=True, progress=False)
        except Exception as exc:
            self.errors.append(repr(exc))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _setup_customers(lab: Any) -> None:
    from labkit.lab.scenarios import ensure_customer

    ensure_customer(lab, RICH, 10**11)
    ensure_customer(lab, POOR, 100)
    ensure_customer(lab, INACTIVE, 10**9)
    r = lab.http("command-service").post("/api/commands/deactivate-user",
                                         json={"user_id": INACTIVE, "reason": "chaos"})
    if r.status_code not in (200, 202, 409):
        raise RuntimeError(f"could not deactivate {INACTIVE}: {r.status_code} {r.text}")


def _arm(lab: Any, f: Fault) -> bool:
    try:
        lab.faults.inject(f.service, f.mode, times=f.times, seconds=f.seconds, path=f.path)
        return True
    except Exception:
        return False  # the participant is down (restarting): this fault is skipped


def _wait_all_ended(client: Any, ids: list[str], timeout: float) -> list[str]:
    """The sagas that did not end in time; a stuck one (the orchestrator gave up on it) is
    returned at once, since waiting will not end it."""
    pending = list(ids)

    def only_stuck_left() -> bool:
        states = {sid: client.state(sid) for sid in pending}
        pending[:] = [sid for sid, st in states.items() if not st.terminal]
        return all(states[sid].status == "stuck" for sid in pending)

    with contextlib.suppress(WaitTimeout):  # the ones still pending are the answer
        wait_until(only_stuck_left, timeout=timeout, interval=0.1, what="the sagas to end")
    return pending


def run_round(lab: Any, plans: list[RunPlan], concurrency: int = 4, end_timeout: float = 120.0,
              on_run: Callable[[RunPlan, str], None] | None = None) -> dict[str, Any]:
    """Run these plans on a running local lab; wait, clear faults, check the invariants."""
    from labkit.ops import invariants

    _setup_customers(lab)
    client = lab.saga
    prices = client.prices()
    supervisor = Supervisor(lab) if getattr(lab, "mode", "local") == "local" else None
    todo = list(reversed(plans))
    lock = threading.Lock()
    ids: list[str] = []
    armed: Counter = Counter()
    attacked: Counter = Counter()
    accepted: Counter = Counter()
    errors: list[str] = []

    def run_attacks(plan: RunPlan, sid: str, kinds: list[str]) -> None:
        for kind in kinds:
            try:
                state = client.state(sid)
                bad = attack(lab, kind, sid, state.order_id, state)
            except Exception as exc:  # a participant down (a crash fault): no attack then
                with lock:
                    errors.append(f"run {plan.n} attack {kind}: {exc!r}")
                continue
            with lock:
                attacked[kind] += 1
                if bad:
                    accepted[kind] += 1

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                plan = todo.pop()
            for f in plan.faults:
                if _arm(lab, f):
                    with lock:
                        armed[f.mode] += 1
            try:
                sid = client.place_order(plan.user, [(sku, q, prices[sku]) for sku, q in plan.lines],
                                         crash_after=plan.crash_after)
            except Exception as exc:
                with lock:
                    errors.append(f"run {plan.n}: {exc!r}")
                continue
            with lock:
                ids.append(sid)
                if plan.crash_after:
                    armed["orchestrator-kill"] += 1
            if on_run:
                on_run(plan, sid)
            run_attacks(plan, sid, [a for a in plan.attacks if a == "refund-midflight"])
            _wait_all_ended(client, [sid], 60.0)
            run_attacks(plan, sid, [a for a in plan.attacks if a != "refund-midflight"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stuck = _wait_all_ended(client, ids, end_timeout)
    finally:
        with contextlib.suppress(Exception):
            lab.faults.clear()
        if supervisor is not None:
            supervisor.check()
            supervisor.close()
    with contextlib.suppress(Exception):
        lab.faults.clear()
    states = [client.state(sid) for sid in ids]
    statuses = Counter(st.status for st in states)
    failures = Counter(st.failure for st in states if st.failure)
    report = invariants.check(lab, client.store)
    return {"runs": len(plans), "placed": len(ids), "statuses": statuses, "stuck": stuck,
            "failures": failures,
            "violations": report.violations, "armed": armed, "errors": errors,
            "attacks": attacked, "attacks_accepted": accepted,
            "restarts": supervisor.restarts if supervisor else Counter(),
            "supervisor_errors": supervisor.errors if supervisor else []}


@contextlib.contextmanager
def _fresh_lab() -> Iterator[Any]:
    from labkit.bench.system import temporary_lab
    from labkit.lab import Lab

    with temporary_lab() as rt:
        # The failures need /faults; a loaded machine may take a while to start ten processes.
        rt.up(progress=False, faults=True, timeout=120)
        lab = Lab(rt.settings, gateway_port=0)
        try:
            yield lab
        finally:
            lab.close()


def run_chaos(runs: int = 1000, seed: int = 0, *, concurrency: int = 4, lab: Any = None,
              round_size: int = 100, participant_crashes: bool = True,
              progress: bool = False) -> dict[str, Any]:
    """Run the chaos test; returns `{runs, completed, compensated, stuck, violations, seconds}`
    and details (failed, armed faults, restarts, the first violations)."""
    started = time.perf_counter()
    plans = plan_runs(runs, seed, participant_crashes=participant_crashes)
    rounds = [plans[i:i + round_size] for i in range(0, len(plans), round_size)] if lab is None \
        else [plans]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=runs, unit="saga", desc="chaos")
    statuses: Counter = Counter()
    failures: Counter = Counter()
    armed: Counter = Counter()
    attacks: Counter = Counter()
    accepted: Counter = Counter()
    restarts: Counter = Counter()
    stuck: list[str] = []
    violations: list[str] = []
    errors: list[str] = []

    def tick(plan: RunPlan, sid: str) -> None:
        if bar is not None:
            bar.update(1)

    try:
        for i, chunk in enumerate(rounds):
            if lab is not None:
                out = run_round(lab, chunk, concurrency, on_run=tick)
            else:
                with _fresh_lab() as fresh:
                    out = run_round(fresh, chunk, concurrency, on_run=tick)
            statuses.update(out["statuses"])
            failures.update(out["failures"])
            armed.update(out["armed"])
            attacks.update(out["attacks"])
            accepted.update(out["attacks_accepted"])
            restarts.update(out["restarts"])
            errors += out["supervisor_errors"][:5]
            stuck += out["stuck"]
            violations += [f"round {i}: {v}" for v in out["violations"]]
            errors += out["errors"]
    finally:
        if bar is not None:
            bar.close()
    return {
        "runs": runs, "completed": statuses.get("completed", 0),
        "compensated": statuses.get("compensated", 0), "failed": statuses.get("failed", 0),
        "stuck": len(stuck), "violations": len(violations),
        "seconds": round(time.perf_counter() - started, 1),
        "seed": seed, "concurrency": concurrency, "rounds": len(rounds),
        "faults_armed": dict(armed), "restarts": dict(restarts),
        "attacks": dict(attacks), "attacks_accepted": sum(accepted.values()),
        "attacks_accepted_by_kind": dict(accepted),
        "compensated_because": dict(failures.most_common()), "errors": errors[:20],
        "stuck_sagas": stuck[:20], "violation_details": violations[:20],
    }
