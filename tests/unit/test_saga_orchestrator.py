"""The orchestrator against a real SQLite event store and an in-memory model of the participants.

The model keeps the participants' contract (docs/api.md): idempotency keys return the first
reply, compensations of things that never happened are no-ops. The end-to-end version of these
tests, against the real services, is tests/integration/test_saga_*.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecommerce.domain import saga as s
from ecommerce.health import Heartbeat
from ecommerce.saga.orchestrator import (
    Orchestrator,
    SimulatedCrash,
    find_saga,
    pending_saga_ids,
    raise_crash,
    start_saga,
)
from ecommerce.saga.participants import HttpParticipants
from ecommerce.store.sqlite_events import SqliteEventStore
from tests.waiting import wait_until

FAST = s.RetryPolicy(initial_backoff=0.001, max_backoff=0.004, step_deadline=0.2,
                     request_timeout=0.05, lease_margin=0.05)
LOST = "lost"  # fault: the participant applies the request but the reply never arrives


@dataclass
class World:
    """The four participants' state, with idempotency keys and injectable faults."""

    users: dict[str, str] = field(default_factory=lambda: {"u1": "active", "u2": "inactive",
                                                           "poor": "active"})
    stock: dict[str, int] = field(default_factory=lambda: {"KB": 10, "MS": 1})
    reserved: dict[str, dict[str, int]] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=lambda: {"u1": 100_000, "poor": 10,
                                                              "merchant": 0})
    charges: dict[str, int] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)
    replies: dict[str, s.Outcome] = field(default_factory=dict)
    faults: dict[str, list[Any]] = field(default_factory=dict)
    effects: Counter = field(default_factory=Counter)  # (action, order) -> times applied
    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0

    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome:
        req = s.request_for(action, saga)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.keys.append(req.idempotency_key)
            queue = self.faults.get(action)
            fault = queue.pop(0) if queue else None
            if isinstance(fault, s.Transient):
                return fault
            if req.idempotency_key in self.replies:
                out = self.replies[req.idempotency_key]
            else:
                out = self.replies[req.idempotency_key] = self.handle(action, saga)
            return s.Transient("reply lost") if fault == LOST else out

    def handle(self, action: str, saga: s.SagaState) -> s.Outcome:
        oid = saga.order_id
        if action == "validate_user":
            st = self.users.get(saga.user_id)
            if st is None:
                return s.Refused("invalid_user")
            return s.Succeeded() if st == "active" else s.Refused("inactive_user")
        if action in ("create_order", "confirm_order", "cancel_order"):
            cur = self.orders.get(oid)
            if action == "create_order":
                self.orders[oid] = "PENDING"
            elif cur is None:
                return s.Succeeded({"noop": "not_found"}) if action == "cancel_order" else \
                    s.Refused("not_found")
            elif action == "confirm_order":
                if cur == "CANCELLED":
                    return s.Refused("not_pending")
                self.orders[oid] = "CONFIRMED"
            else:
                if cur == "CONFIRMED":
                    return s.Refused("already_confirmed")
                self.orders[oid] = "CANCELLED"
        elif action == "reserve_stock":
            if any(self.stock.get(ln["sku"], 0) < ln["quantity"] for ln in saga.lines):
                return s.Refused("insufficient_stock")
            for ln in saga.lines:
                self.stock[ln["sku"]] -= ln["quantity"]
            self.reserved[oid] = {ln["sku"]: ln["quantity"] for ln in saga.lines}
        elif action == "release_stock":
            for sku, q in self.reserved.pop(oid, {}).items():
                self.stock[sku] += q
        elif action == "charge_payment":
            if self.balances.get(saga.user_id, 0) < saga.amount:
                return s.Refused("declined")
            self.balances[saga.user_id] -= saga.amount
            self.balances["merchant"] += saga.amount
            self.charges[oid] = saga.amount
        elif action == "refund_payment":
            amount = self.charges.pop(oid, 0)
            self.balances[saga.user_id] += amount
            self.balances["merchant"] -= amount
        self.effects[(action, oid)] += 1
        return s.Succeeded({"action": action})

    def snapshot(self) -> dict[str, Any]:
        return {"stock": dict(self.stock), "reserved": dict(self.reserved),
                "balances": dict(self.balances), "charges": dict(self.charges),
                "orders": dict(self.orders)}


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    es = SqliteEventStore(tmp_path / "events.db")
    yield es
    es.close()


def orchestrator(store: SqliteEventStore, world: World, **kw: Any) -> Orchestrator:
    kw.setdefault("policy", FAST)
    return Orchestrator(store, world, **kw)


SCENARIOS: dict[str, tuple[str, list[tuple[str, int]], dict[str, list[Any]], str]] = {
    "happy": ("u1", [("KB", 2)], {}, "completed"),
    "declined": ("poor", [("KB", 1)], {}, "compensated"),
    "out-of-stock": ("u1", [("MS", 5)], {}, "compensated"),
    "invalid-user": ("nobody", [("KB", 1)], {}, "compensated"),
    "flaky": ("u1", [("KB", 1)], {"reserve_stock": [s.Transient("503")] * 3}, "completed"),
    "timeout": ("u1", [("KB", 1)], {"charge_payment": [LOST] * 1000}, "compensated"),
}
PRICES = {"KB": 1500, "MS": 900}


def place(store: SqliteEventStore, scenario: str, world: World, saga_id: str = "sg1") -> str:
    user, lines, faults, _ = SCENARIOS[scenario]
    world.faults = {k: list(v) for k, v in faults.items()}
    return start_saga(store, user, lines, saga_id=saga_id, prices=PRICES)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenarios_end_as_expected_and_keep_the_books(store: SqliteEventStore, scenario: str) -> None:
    world = World()
    sid = place(store, scenario, world)
    state = orchestrator(store, world).run(sid)
    assert state.status == SCENARIOS[scenario][3]
    total = sum(world.balances.values())
    assert total == 100_010
    oid = state.order_id
    if state.status == "completed":
        assert world.orders[oid] == "CONFIRMED" and oid in world.charges and oid in world.reserved
    else:
        assert world.orders.get(oid, "CANCELLED") == "CANCELLED"
        assert oid not in world.charges and oid not in world.reserved
        assert world.stock == {"KB": 10, "MS": 1}
    assert all(n == 1 for n in world.effects.values()), world.effects


def test_every_call_carries_saga_and_action_as_idempotency_key(store: SqliteEventStore) -> None:
    world = World()
    sid = place(store, "declined", world)
    orchestrator(store, world).run(sid)
    assert world.keys == [f"{sid}:{a}" for a in (
        "validate_user", "create_order", "reserve_stock", "charge_payment",
        "release_stock", "cancel_order")]


def test_each_step_costs_one_append(store: SqliteEventStore) -> None:
    world = World()
    sid = place(store, "happy", world)
    before = store.last_position()
    orchestrator(store, world).run(sid)
    types = [e.type for e in store.read_stream(s.stream_id(sid))]
    assert types == [s.SAGA_STARTED, s.STEP_STARTED] + [s.STEP_SUCCEEDED, s.STEP_STARTED] * 4 + [
        s.STEP_SUCCEEDED, s.SAGA_COMPLETED]
    positions = [e.position for e in store.read_all(before)]
    assert len(positions) == 11  # batched: 6 appends, but every event is stored


def _uncrashed(tmp: Path, scenario: str) -> tuple[s.SagaState, dict[str, Any], list[str]]:
    es = SqliteEventStore(tmp / f"ref-{scenario}.db")
    world = World()
    sid = place(es, scenario, world)
    state = orchestrator(es, world).run(sid)
    points = []
    for e in es.read_stream(s.stream_id(sid))[1:]:
        step = e.data.get("step")
        spec = f"{step}:{e.type}" if step else e.type
        if spec not in points:
            points.append(spec)
    es.close()
    return state, world.snapshot(), points


def _shape(state: s.SagaState) -> tuple[Any, ...]:
    return (state.status, state.failure, state.failed_step,
            tuple(p.status for p in state.actions), tuple(p.status for p in state.compensations))


@pytest.mark.parametrize("scenario", ["happy", "declined", "out-of-stock", "flaky", "timeout"])
def test_killed_at_any_point_a_new_orchestrator_finishes_it_exactly_like_an_uncrashed_run(
        tmp_path: Path, scenario: str) -> None:
    ref_state, ref_world, points = _uncrashed(tmp_path, scenario)
    assert len(points) >= 4
    for n, point in enumerate(points):
        es = SqliteEventStore(tmp_path / f"crash-{scenario}-{n}.db")
        world = World()
        sid = place(es, scenario, world)
        first = orchestrator(es, world, crash_after=point, on_crash=raise_crash)
        with pytest.raises(SimulatedCrash):
            first.run(sid)
        assert (pending_saga_ids(es) == [sid]) == (not first.read(sid).terminal)
        # A new process: another owner, started after the dead one's lease ran out.
        second = orchestrator(es, world, clock=lambda: time.time() + 60)
        second.run_pending()
        state = second.read(sid)
        assert _shape(state) == _shape(ref_state), point
        assert world.snapshot() == ref_world, point
        assert all(v == 1 for v in world.effects.values()), (point, world.effects)
        es.close()


def test_resume_waits_for_the_dead_owners_lease(store: SqliteEventStore) -> None:
    policy = s.RetryPolicy(request_timeout=0.1, max_backoff=0.05, lease_margin=0.05)
    world = World()
    sid = place(store, "happy", world)
    with pytest.raises(SimulatedCrash):
        Orchestrator(store, world, policy=policy, crash_after="charge_payment:StepStarted",
                     on_crash=raise_crash).run(sid)
    started = time.monotonic()
    state = Orchestrator(store, world, policy=policy).run(sid)
    waited = time.monotonic() - started
    assert state.status == "completed"
    assert waited > policy.lease * 0.5  # it waited for the lease (a lower bound: load only adds)
    takeover = [e for e in store.read_stream(s.stream_id(sid)) if e.data.get("takeover")]
    assert [e.data["step"] for e in takeover] == ["charge_payment"]


def test_two_orchestrators_on_the_same_sagas_apply_each_effect_once(store: SqliteEventStore) -> None:
    world = World(delay=0.002)
    world.stock["KB"] = 1000
    world.balances["u1"] = 10**9
    ids = [start_saga(store, "u1", [("KB", 1)], prices=PRICES) for _ in range(20)]
    # Both are alive: a lease far longer than any pause a loaded machine can cause, so what is
    # tested is that two live drivers never both act (a takeover after a lease ran out is
    # another test's subject).
    live = s.RetryPolicy(request_timeout=5.0, max_backoff=0.05, lease_margin=60.0)
    a, b = (orchestrator(store, world, workers=8, policy=live) for _ in range(2))
    stop = threading.Event()
    threads = [threading.Thread(target=o.run_pending, args=(stop,)) for o in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.read(i).status for i in ids] == ["completed"] * 20
    assert all(v == 1 for v in world.effects.values())
    assert len(world.effects) == 20 * 4
    for sid in ids:  # no decision was recorded twice
        types = Counter((e.type, e.data.get("step")) for e in store.read_stream(s.stream_id(sid)))
        assert max(types.values()) == 1, types


def test_follow_drives_new_sagas_and_resumes_old_ones(store: SqliteEventStore) -> None:
    world = World()
    old = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
    orch = orchestrator(store, world, workers=4)
    stop = threading.Event()
    t = threading.Thread(target=orch.follow, args=(stop, 0.002))
    t.start()
    try:
        new = [start_saga(store, "u1", [("KB", 1)], prices=PRICES) for _ in range(3)]
        wait_until(lambda: pending_saga_ids(store) == [], what="every saga to end")
        assert {orch.read(i).status for i in [old, *new]} == {"completed"}
    finally:
        stop.set()
        t.join(5)
        orch.close()


class _CountingReads(SqliteEventStore):
    """The real store, counting the streams it was asked to read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.streams_read: Counter = Counter()

    def read_stream(self, stream_id: str, from_version: int = 1) -> Any:
        self.streams_read[stream_id] += 1
        return super().read_stream(stream_id, from_version)


def test_a_follower_drives_a_new_saga_from_the_saga_started_it_found(tmp_path: Path) -> None:
    """One round trip less per saga: the SagaStarted the follower just read is the stream."""
    store = _CountingReads(tmp_path / "events.db")
    world = World()
    orch = orchestrator(store, world, workers=4)
    stop = threading.Event()
    beat = Heartbeat("saga-orchestrator")
    t = threading.Thread(target=orch.follow, args=(stop, 0.002), kwargs={"heartbeat": beat})
    t.start()
    try:
        # Sagas started before the follower took its place are found by the start-up scan.
        wait_until(lambda: beat.readiness()[0] == 200, what="the follower's first turn")
        ids = [start_saga(store, "u1", [("KB", 1)], prices=PRICES) for _ in range(3)]
        wait_until(lambda: pending_saga_ids(store) == [], what="every saga to end")
        assert [store.streams_read[s.stream_id(i)] for i in ids] == [0, 0, 0]
    finally:
        stop.set()
        t.join(5)
        orch.close()
    assert {orch.read(i).status for i in ids} == {"completed"}
    store.close()


def test_driving_from_a_stale_first_event_rereads_and_does_each_thing_once(
        store: SqliteEventStore) -> None:
    """Another orchestrator moved the saga past what the caller found: the first append
    conflicts, the stream is read, and the saga ends as if nothing had happened."""
    world = World()
    sid = place(store, "happy", world)
    found = store.read_stream(s.stream_id(sid))[:1]
    with pytest.raises(SimulatedCrash):
        orchestrator(store, world, crash_after="reserve_stock:StepSucceeded",
                     on_crash=raise_crash).run(sid)
    later = orchestrator(store, world, clock=lambda: time.time() + 60)
    assert later._drive(sid, None, found).status == "completed"
    assert all(n == 1 for n in world.effects.values()), world.effects
    types = Counter((e.type, e.data.get("step")) for e in store.read_stream(s.stream_id(sid)))
    assert types[(s.STEP_STARTED, "create_order")] == 1


def test_find_saga_by_order_id_and_refuse_a_duplicate(store: SqliteEventStore) -> None:
    sid = start_saga(store, "u1", [("KB", 1)], order_id="o-77", prices=PRICES)
    assert find_saga(store, "o-77") == sid == find_saga(store, sid)
    assert find_saga(store, "nope") is None
    with pytest.raises(s.SagaRuleError):
        start_saga(store, "u1", [("KB", 1)], saga_id=sid, prices=PRICES)


def test_http_participants_send_the_key_and_classify_answers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/api/payments":
            return httpx.Response(409, json={"detail": "no money", "reason": "declined"})
        if path.startswith("/api/inventory"):
            raise httpx.ConnectError("connection refused")
        if path.startswith("/api/users"):
            raise httpx.ReadTimeout("slow")
        return httpx.Response(503, json={"reason": "injected_fault"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    urls = {p: f"http://{p}" for p in ("user-service", "order-service", "inventory-service",
                                        "payment-service")}
    parts = HttpParticipants(urls, client=client)
    state = s.fold("sg9", [])
    state = s.apply(state, s.SAGA_STARTED, s.saga_started("sg9", "o9", "u9", [("KB", 1, 5)]).data,
                    1, "2026-01-01T00:00:00+00:00")
    assert parts.call("charge_payment", "action", state) == s.Refused("declined", "no money", 409)
    assert isinstance(parts.call("reserve_stock", "action", state), s.Transient)
    assert isinstance(parts.call("validate_user", "action", state), s.Transient)
    assert isinstance(parts.call("create_order", "action", state), s.Transient)
    assert [r.headers["Idempotency-Key"] for r in seen] == [
        "sg9:charge_payment", "sg9:reserve_stock", "sg9:validate_user", "sg9:create_order"]


@pytest.mark.parametrize(("field", "value"), [("order_id", "주문 ✓/../x"), ("order_id", "o" * 400),
                                              ("saga_id", "a b")])
def test_an_id_the_participants_would_refuse_starts_no_saga(store, field, value) -> None:
    """`labkit saga place --order-id "주문 ✓/../x"` started a saga that failed at create_order
    (order-service takes 1-100 of letters, digits, _ . : - in its URLs)."""
    with pytest.raises(s.SagaRuleError, match=r"id .* is refused: 1 to 100 letters, digits"):
        start_saga(store, "u1", [("KB", 1)], prices=PRICES, **{field: value})
    assert store.last_position() == 0
