"""The saga's pure transition logic: decisions from events, without HTTP or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecommerce.domain import orders as o
from ecommerce.domain import saga as s

POLICY = s.RetryPolicy()
ME, OTHER = "me", "other"
LINES = [{"sku": "KB", "quantity": 2, "price": 1500}]


class Ev:
    """A recorded event as fold sees it."""

    def __init__(self, type: str, data: dict[str, Any], version: int, at: datetime) -> None:
        self.type, self.data, self.version, self.recorded_at = type, data, version, at
        self.recorded_iso = at.isoformat()


class Sim:
    """Runs the pure logic like the orchestrator does, with scripted participant outcomes."""

    def __init__(self, script: dict[str, list[s.Outcome]] | None = None, owner: str = ME) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.owner = owner
        self.now = 1_000_000.0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)
        started = s.saga_started("sg1", "ord-1", "u1", LINES)
        self.events: list[Ev] = []
        self.calls: list[tuple[str, str]] = []
        self.record([started])

    @property
    def state(self) -> s.SagaState:
        return s.fold("sg1", self.events)

    def record(self, evs: Any) -> None:
        for e in evs:
            at = self.t0 + timedelta(seconds=self.now - 1_000_000.0)
            self.events.append(Ev(e.type, e.data, len(self.events) + 1, at))

    def outcome(self, action: str) -> s.Outcome:
        queue = self.script.get(action)
        return queue.pop(0) if queue else s.Succeeded({"ok": True})

    def run(self, max_steps: int = 500) -> s.SagaState:
        for _ in range(max_steps):
            state = self.state
            act = s.next_action(state, self.now, self.owner, POLICY)
            if isinstance(act, s.Done):
                return state
            if isinstance(act, s.Wait):
                self.now = act.until + 0.001
                continue
            self.record(act.record)
            if isinstance(act, s.Finish):
                continue
            self.calls.append((act.kind, act.action))
            self.now += 0.01
            out = self.outcome(act.action)
            evs = s.on_outcome(self.state, act, out, self.now, self.owner, POLICY)
            self.record(evs)
            self.now += s.retry_delay(evs)
        raise AssertionError("saga did not end")

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def test_happy_path_runs_every_step_in_order_and_completes() -> None:
    sim = Sim()
    state = sim.run()
    assert state.status == "completed"
    assert sim.calls == [("action", n) for n in s.STEP_NAMES]
    assert sim.types()[-1] == s.SAGA_COMPLETED
    assert sim.types().count(s.STEP_STARTED) == 5
    assert s.COMPENSATION_STARTED not in sim.types()


@pytest.mark.parametrize(("failing", "undo"), [
    ("validate_user", []),
    ("create_order", []),
    ("reserve_stock", ["cancel_order"]),
    ("charge_payment", ["release_stock", "cancel_order"]),
    ("confirm_order", ["refund_payment", "release_stock", "cancel_order"]),
])
def test_business_refusal_compensates_completed_steps_in_reverse(failing: str, undo: list[str]) -> None:
    sim = Sim({failing: [s.Refused("declined")]})
    state = sim.run()
    assert state.status == "compensated"
    assert state.failure == "declined" and state.failed_step == failing
    comps = [a for k, a in sim.calls if k == "compensation"]
    assert comps == undo
    # a refusal is an answer: never retried
    assert [a for k, a in sim.calls if k == "action"].count(failing) == 1
    assert s.STEP_RETRIED not in sim.types()


def test_transient_failures_are_retried_with_growing_capped_backoff_then_succeed() -> None:
    sim = Sim({"reserve_stock": [s.Transient("HTTP 503")] * 4})
    state = sim.run()
    assert state.status == "completed"
    retries = [e.data for e in sim.events if e.type == s.STEP_RETRIED]
    assert [r["attempt"] for r in retries] == [1, 2, 3, 4]
    delays = [r["retry_in"] for r in retries]
    assert delays == sorted(delays) and delays[0] == POLICY.initial_backoff
    assert state.actions[s.STEP_NAMES.index("reserve_stock")].attempts == 5


def test_backoff_is_exponential_and_capped() -> None:
    p = s.RetryPolicy(initial_backoff=0.05, max_backoff=1.0)
    assert [p.backoff(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert p.backoff(3, jitter=0.5) == pytest.approx(0.1)


def test_deadline_turns_transient_failures_into_a_failure_that_compensates_the_step_too() -> None:
    sim = Sim({"charge_payment": [s.Transient("timeout")] * 100})
    state = sim.run()
    assert state.status == "compensated"
    failed = next(e.data for e in sim.events if e.type == s.STEP_FAILED)
    assert failed["kind"] == "deadline" and failed["step"] == "charge_payment"
    # the charge may have happened (we never got an answer): refund it too, first
    comps = [a for k, a in sim.calls if k == "compensation"]
    assert comps == ["refund_payment", "release_stock", "cancel_order"]
    started = next(e for e in sim.events if e.type == s.STEP_STARTED
                   and e.data["step"] == "charge_payment")
    assert sim.events[-1].recorded_at - started.recorded_at < timedelta(seconds=6)


def test_the_pivot_is_never_abandoned_on_transient_failures() -> None:
    sim = Sim({"confirm_order": [s.Transient("HTTP 503")] * 30})
    state = sim.run(max_steps=1000)
    assert state.status == "completed"
    assert state.actions[-1].attempts == 31
    assert s.STEP_FAILED not in sim.types()


def test_compensations_are_retried_until_they_succeed() -> None:
    sim = Sim({"charge_payment": [s.Refused("declined")],
               "release_stock": [s.Transient("connection refused")] * 25})
    state = sim.run(max_steps=1000)
    assert state.status == "compensated"
    assert [e.type for e in sim.events].count(s.COMPENSATION_RETRIED) == 25


def test_a_refused_compensation_fails_the_saga_for_a_human() -> None:
    sim = Sim({"charge_payment": [s.Refused("declined")],
               "cancel_order": [s.Refused("already_confirmed", status=409)]})
    state = sim.run()
    assert state.status == "failed"
    assert state.failure == "compensation_refused:already_confirmed"
    assert sim.types()[-1] == s.SAGA_FAILED


def test_a_live_owners_lease_keeps_others_away_and_an_expired_one_is_taken_over() -> None:
    sim = Sim()
    act = s.next_action(sim.state, sim.now, OTHER, POLICY)
    assert isinstance(act, s.Invoke)
    sim.record(act.record)  # OTHER started step 1, then died
    assert isinstance(s.next_action(sim.state, sim.now, ME, POLICY), s.Wait)
    later = sim.now + POLICY.lease + 0.01
    take = s.next_action(sim.state, later, ME, POLICY)
    assert isinstance(take, s.Invoke) and take.record[0].data["takeover"] is True
    assert take.record[0].data["owner"] == ME and take.attempt == 2
    # the owner itself continues without waiting
    assert isinstance(s.next_action(sim.state, sim.now, OTHER, POLICY), s.Invoke)


def test_crash_point_fires_only_the_first_time_the_event_is_recorded() -> None:
    sim = Sim()
    state = sim.state
    act = s.next_action(state, sim.now, ME, POLICY)
    assert s.crash_point_matches("validate_user:StepStarted", act.record, state)
    assert s.crash_point_matches("1:StepStarted", act.record, state)
    assert not s.crash_point_matches("2:StepStarted", act.record, state)
    sim.record(act.record)
    again = s.next_action(sim.state, sim.now + 10, OTHER, POLICY)  # takeover re-records it
    assert not s.crash_point_matches("validate_user:StepStarted", again.record, sim.state)


@pytest.mark.parametrize(("kind", "status", "body", "expected"), [
    ("action", 201, {"status": "CHARGED"}, s.Succeeded),
    ("action", 409, {"reason": "declined"}, s.Refused),
    ("action", 422, {"reason": "validation_error"}, s.Refused),
    ("action", 503, {"reason": "injected_fault"}, s.Transient),
    ("action", 500, None, s.Transient),
    ("compensation", 200, {"status": "REFUNDED"}, s.Succeeded),
    ("compensation", 404, {"reason": "not_found"}, s.Succeeded),
    ("compensation", 409, {"reason": "already_confirmed"}, s.Refused),
    ("compensation", 503, {}, s.Transient),
])
def test_classify(kind: s.Kind, status: int, body: Any, expected: type) -> None:
    assert isinstance(s.classify("charge_payment", kind, status, body), expected)


def test_validate_user_refuses_unknown_and_inactive_users() -> None:
    assert s.classify("validate_user", "action", 404, {"reason": "not_found"}) == s.Refused(
        "invalid_user", "user does not exist", 404)
    out = s.classify("validate_user", "action", 200, {"id": "u", "status": "inactive"})
    assert isinstance(out, s.Refused) and out.reason == "inactive_user"
    assert isinstance(s.classify("validate_user", "action", 200, {"status": "active"}), s.Succeeded)


def test_requests_carry_the_idempotency_key_and_the_order() -> None:
    state = Sim().state
    for action in [*s.STEP_NAMES, "cancel_order", "release_stock", "refund_payment"]:
        req = s.request_for(action, state)
        assert req.idempotency_key == f"sg1:{action}"
    pay = s.request_for("charge_payment", state)
    assert pay.body == {"order_id": "ord-1", "account_id": "u1", "amount": 3000}
    assert s.request_for("release_stock", state).path == "/api/inventory/reservations/ord-1/release"


def test_lines_are_normalised_and_checked() -> None:
    assert s.normalise_lines([("KB", 2)], {"KB": 1500}) == LINES
    assert s.order_amount(s.normalise_lines([("KB", 2, 100), ("MS", 1, 5)])) == 205
    for bad in ([], [("KB", 0)], [("KB", 1, 1.5)], [("KB", 1, 10), ("KB", 2, 10)], ["x"]):
        with pytest.raises(s.SagaRuleError):
            s.normalise_lines(bad, {"KB": 1})
    with pytest.raises(s.SagaRuleError, match="no price"):
        s.normalise_lines([("ZZ", 1)])  # no catalogue: the caller prices each line


def test_lines_order_service_would_refuse_are_refused_before_any_saga_starts() -> None:
    """`labkit saga place --line MOUSE-WL:99999999999999999999999` started a saga whose
    amount had 27 digits, which create_order then refused (validation_error)."""
    with pytest.raises(s.SagaRuleError, match=r"line quantity must be an int from 1 to "
                                              r"1,000,000; got 99999999999999999999999"):
        s.normalise_lines([("KB", 99999999999999999999999)], {"KB": 1})
    assert s.normalise_lines([("KB", o.MAX_QUANTITY)], {"KB": 1})[0]["quantity"] == 1_000_000
    many = [(f"S{n}", 1) for n in range(o.MAX_LINES + 1)]
    with pytest.raises(s.SagaRuleError, match="an order has at most 50 lines"):
        s.normalise_lines(many, {sku: 1 for sku, _ in many})


@pytest.mark.parametrize("line", [("NOPE", 1), ("NOPE", 1, 500), {"sku": "NOPE", "quantity": 1}])
def test_an_unknown_sku_is_refused_naming_the_catalogue_never_asking_for_a_price(line) -> None:
    with pytest.raises(s.SagaRuleError) as err:
        s.normalise_lines([line], {"KB": 1500, "MS": 500})
    assert err.value.reason == "unknown_sku"
    assert str(err.value) == "sku 'NOPE' is not in the catalogue: choose one of KB, MS"


def test_folding_copies_states_exactly_and_refuses_unknown_fields() -> None:
    """`apply` copies the frozen states without `dataclasses.replace`: the copy must be an equal,
    separate object of the same class, and a field name that does not exist must fail loudly
    (replace would have raised; a silent extra attribute would hide a typo)."""
    from dataclasses import replace as dc_replace

    from ecommerce.domain.saga import _evolve

    state = s.SagaState("x1", status="running", order_id="o1", amount=5)
    copied = _evolve(state, version=3, status="compensating")
    assert copied == dc_replace(state, version=3, status="compensating")
    assert type(copied) is s.SagaState and copied is not state and state.version == 0
    with pytest.raises(TypeError, match="stauts"):
        _evolve(state, stauts="completed")
