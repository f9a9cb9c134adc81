"""`labkit bench saga`: completed order sagas per second and their latency, over real HTTP.

The whole local system runs as processes (the four participants, the orchestrator, the
projector, the other services). `concurrency` client threads each place an order (append
SagaStarted) and wait for its end, so at most `concurrency` sagas are in flight. Reported:

- `sagas_per_s`: completed sagas / wall seconds from the first placement to the last end;
- `p50_ms`, `p99_ms`: saga latency from the log, SagaStarted -> SagaCompleted (recorded times:
  includes the orchestrator noticing the saga, five participant calls, six appends);
- `client_p50_ms`, `client_p99_ms`: what a caller of `place_order` + `wait` saw;
- `phases_ms`: where a saga's time goes, from its stream (`saga_phases`): noticing the saga,
  then each step (the participant's call and the orchestrator recording its answer);
- `machine_loop_ms`: how fast this machine runs Python (`labkit.bench.system.machine_speed`),
  measured first: figures from machines (or days) of different speed compare only with it.

Each order is one unit of the most plentiful SKU. By default the benchmark runs in a fresh
temporary lab (never the student's); should the sagas outnumber the units in stock, it runs
several rounds, each in a new lab, measured separately and added up (start-up excluded).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ecommerce.domain import saga as s
from labkit.bench.system import machine_speed, percentile

WARMUP = 10


@contextlib.contextmanager
def _fresh_lab() -> Iterator[Any]:
    from labkit.bench.system import temporary_lab
    from labkit.lab import Lab

    with temporary_lab() as rt:
        rt.up(progress=False)
        lab = Lab(rt.settings, gateway_port=0)
        try:
            yield lab
        finally:
            lab.close()


def _stock_plan(lab: Any, n: int) -> list[str]:
    """One SKU per order, each with a unit in stock, most plentiful first."""
    items = lab.http("inventory-service").get("/api/inventory").json()["items"]
    plan: list[str] = []
    left = {i["sku"]: i["available"] for i in items}
    while len(plan) < n and any(left.values()):
        sku = max(left, key=lambda k: left[k])
        plan.append(sku)
        left[sku] -= 1
    return plan


def _ends(stream_id: str, types: Sequence[str]) -> bool:
    return stream_id.startswith(s.STREAM_PREFIX) and any(t in s.TERMINAL_EVENTS for t in types)


class _EndWatcher:
    """One thread follows the log for saga ends and wakes the client thread waiting for each
    (instead of every client thread polling its own stream). On PostgreSQL it waits for the
    ends' notifications (LISTEN) instead of polling every millisecond: the harness then costs
    the machine it measures (2 cores) almost nothing; on SQLite it polls every `poll` s."""

    def __init__(self, store: Any, poll: float = 0.001) -> None:
        self.store, self.poll = store, poll
        self.waiting: dict[str, threading.Event] = {}
        self.ended: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.cursor = store.last_position()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def expect(self, saga_id: str) -> threading.Event:
        with self.lock:
            ev = self.waiting[saga_id] = threading.Event()
            if saga_id in self.ended:
                ev.set()
            return ev

    def _run(self) -> None:
        # Woken by PostgreSQL's NOTIFY at each saga end; on SQLite, polls every `poll` s.
        waiter = self.store.waiter(_ends, types=list(s.TERMINAL_EVENTS), idle_max=self.poll)
        try:
            while not self.stop.is_set():
                found, head = self.store.read_all_and_head(
                    self.cursor, 1000, stream_prefix=s.STREAM_PREFIX, types=list(s.TERMINAL_EVENTS))
                now = time.perf_counter()
                with self.lock:
                    for e in found:
                        sid = s.saga_id_of(e.stream_id)
                        self.ended[sid] = now
                        if sid in self.waiting:
                            self.waiting[sid].set()
                self.cursor = max(head, found[-1].position if found else self.cursor)
                if len(found) < 1000:
                    waiter.wait(self.stop, len(found), self.cursor)
        finally:
            waiter.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def saga_phases(events: Sequence[Any]) -> dict[str, float]:
    """Where one saga's time went, from its stream's recorded times (ms):

    - `discover`: SagaStarted -> the first StepStarted (the orchestrator noticing the saga, then
      recording its first decision);
    - one entry per step: its StepStarted -> its StepSucceeded/StepFailed (the participant's
      HTTP call with its own database round trips, and the orchestrator recording the answer);
    - `finish`: the last step's end -> the terminal event (0 when recorded in the same append).
    """
    out: dict[str, float] = {}
    started: dict[str, Any] = {}
    first = events[0].recorded_at if events else None
    last_end = None
    for e in events:
        step = e.data.get("step") if isinstance(e.data, dict) else None
        if e.type == s.STEP_STARTED and step is not None:
            if "discover" not in out and first is not None:
                out["discover"] = (e.recorded_at - first).total_seconds() * 1000
            started.setdefault(step, e.recorded_at)
        elif e.type in (s.STEP_SUCCEEDED, s.STEP_FAILED) and step in started:
            out[str(step)] = (e.recorded_at - started[str(step)]).total_seconds() * 1000
            last_end = e.recorded_at
        elif e.type in s.TERMINAL_EVENTS and last_end is not None:
            out["finish"] = (e.recorded_at - last_end).total_seconds() * 1000
    return out


def run_round(lab: Any, sagas: int, concurrency: int, customer: str = "bench") -> dict[str, Any]:
    """Place `sagas` orders with `concurrency` threads on a running lab; raw measurements."""
    from labkit.lab.scenarios import ensure_customer

    ensure_customer(lab, customer)
    client = lab.saga
    prices = client.prices()
    plan = _stock_plan(lab, sagas + WARMUP)
    for sku in plan[:WARMUP]:  # open connections, warm caches
        client.wait(client.place_order(customer, [(sku, 1, prices[sku])]), timeout=30)
    todo = list(plan[WARMUP:])
    lock = threading.Lock()
    client_ms: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    watcher = _EndWatcher(client.store)

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                sku = todo.pop()
            t0 = time.perf_counter()
            try:
                sid = client.place_order(customer, [(sku, 1, prices[sku])])
                if not watcher.expect(sid).wait(60):
                    raise TimeoutError(f"saga {sid} did not end in 60 s")
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                client_ms.append((watcher.ended[sid] - t0) * 1000)
                ids.append(sid)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        watcher.close()
    seconds = time.perf_counter() - started
    saga_ms, statuses = [], []
    phases: dict[str, list[float]] = {}
    for sid in ids:
        events = client.store.read_stream(s.stream_id(sid))
        statuses.append(s.fold(sid, events).status)
        saga_ms.append((events[-1].recorded_at - events[0].recorded_at).total_seconds() * 1000)
        for name, ms in saga_phases(events).items():
            phases.setdefault(name, []).append(ms)
    return {"seconds": seconds, "saga_ms": saga_ms, "client_ms": client_ms, "phases": phases,
            "completed": statuses.count("completed"), "other": len(statuses) - statuses.count(
                "completed"), "errors": errors}


def _capacity(lab: Any) -> int:
    items = lab.http("inventory-service").get("/api/inventory").json()["items"]
    return sum(i["available"] for i in items) - WARMUP


def bench_saga(sagas: int = 1000, concurrency: int = 8, *, lab: Any = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    speed = machine_speed()
    rounds: list[dict[str, Any]] = []
    left = sagas
    while left > 0:
        if lab is not None:
            n = min(left, _capacity(lab))
            if n <= 0:
                break  # the given lab is out of stock
            rounds.append(run_round(lab, n, concurrency))
        else:
            with _fresh_lab() as fresh:
                n = min(left, _capacity(fresh))
                rounds.append(run_round(fresh, n, concurrency))
        left -= n
    saga_ms = [x for r in rounds for x in r["saga_ms"]]
    client_ms = [x for r in rounds for x in r["client_ms"]]
    completed = sum(r["completed"] for r in rounds)
    phases: dict[str, list[float]] = {}
    for r in rounds:
        for name, values in r["phases"].items():
            phases.setdefault(name, []).extend(values)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "benchmark": "saga", "sagas": sagas, "concurrency": concurrency, "rounds": len(rounds),
        "completed": completed, "not_completed": sum(r["other"] for r in rounds),
        "errors": sum(len(r["errors"]) for r in rounds),
        "seconds": round(seconds, 3),
        "sagas_per_s": round(completed / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(saga_ms, 50), 1), "p99_ms": round(percentile(saga_ms, 99), 1),
        "mean_ms": round(statistics.fmean(saga_ms), 1) if saga_ms else None,
        "client_p50_ms": round(percentile(client_ms, 50), 1),
        "client_p99_ms": round(percentile(client_ms, 99), 1),
        "phases_ms": {name: {"p50": round(percentile(v, 50), 1), "p99": round(percentile(v, 99), 1),
                             "mean": round(statistics.fmean(v), 1)} for name, v in phases.items()},
        "targets": {"sagas_per_s": 100, "p99_ms": 150},
        "machine_loop_ms": speed,
    }
