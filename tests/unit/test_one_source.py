"""One source of truth: a saga step carries its request, compensation and effects; a
projection's handler table is also its list of event types; new steps travel with the saga."""

from __future__ import annotations

import pytest

from ecommerce.domain import saga as s
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Put
from ecommerce.projections import PROJECTIONS
from ecommerce.projections.base import Projection


def _started(steps=None) -> s.SagaState:
    e = s.saga_started("sg1", "ord-1", "alice", [{"sku": "A", "quantity": 2, "price": 5}],
                       steps=steps)
    return s.apply(s.SagaState("sg1"), e.type, e.data, 1, "2026-01-01T00:00:00+00:00")


def test_every_action_and_compensation_builds_its_request_from_its_step():
    state = _started()
    for step in s.ORDER_SAGA:
        for action in filter(None, (step.name, step.compensation)):
            req = s.request_for(action, state)
            assert req.service == step.service and req.idempotency_key == f"sg1:{action}"
    assert s.request_for("release_stock", state).path == "/api/inventory/reservations/ord-1/release"
    with pytest.raises(KeyError, match="unknown saga action"):
        s.request_for("teleport", state)


def test_effects_come_from_the_step_definitions():
    table = s.effects_by_type()
    assert table["OrderCancelled"] == ("create_order", "compensation")
    assert table["PaymentCharged"] == ("charge_payment", "action")
    assert {step for step, _ in table.values()} == {"create_order", "reserve_stock",
                                                    "charge_payment", "confirm_order"}


def _notify() -> s.StepDef:
    return s.StepDef("notify_customer", "user-service", "notify customer", "retract_notice",
                     request=lambda st: ("POST", "/api/plugins/notify", {"order_id": st.order_id}),
                     compensation_request=lambda st: ("POST", "/api/plugins/retract", {}),
                     effects=("CustomerNotified",), compensation_effects=("NoticeRetracted",))


def test_an_added_step_runs_in_new_sagas_only_and_its_definition_travels_with_them():
    old = _started()
    s.register_step(_notify(), after="create_order")
    try:
        new = _started()
        assert [x.name for x in new.steps] == ["validate_user", "create_order", "notify_customer",
                                               "reserve_stock", "charge_payment", "confirm_order"]
        assert len(new.actions) == 6 and [x.name for x in old.steps] == list(s.STEP_NAMES)
        assert s.request_for("notify_customer", new).path == "/api/plugins/notify"
        assert s.effects_by_type()["NoticeRetracted"] == ("notify_customer", "compensation")
    finally:
        assert s.unregister_step("notify_customer")
    # Without the plugin the stream still folds (the step's plain definition is in SagaStarted)
    e = s.saga_started("sg2", "ord-2", "bob", [("A", 1, 5)], steps=new.steps)
    state = s.apply(s.SagaState("sg2"), e.type, e.data, 1, "t")
    assert state.steps[2].name == "notify_customer" and state.steps[2].service == "user-service"
    with pytest.raises(KeyError, match="is the plugin that adds step 'notify_customer' loaded"):
        s.request_for("notify_customer", state)


def test_a_failure_after_an_added_step_compensates_it_in_reverse_order():
    s.register_step(_notify(), after="create_order")
    try:
        state = _started()
    finally:
        s.unregister_step("notify_customer")
    for i, name in enumerate(["validate_user", "create_order", "notify_customer"], start=2):
        state = s.apply(state, s.STEP_SUCCEEDED, {"step": name}, i, "t")
    state = s.apply(state, s.STEP_FAILED, {"step": "reserve_stock", "reason": "out_of_stock"}, 5, "t")
    assert [state.steps[i].compensation for i in state.to_compensate()] == [
        "retract_notice", "cancel_order"]


@pytest.mark.parametrize("bad, message", [
    ({"service": "mail-service"}, "calls one of"),
    ({"request": None}, "needs request="),
    ({"compensation_request": None}, "no compensation_request"),
    ({"name": "charge_payment"}, "cannot be replaced"),
    ({"compensation": "cancel_order"}, "already an action or compensation"),
])
def test_a_bad_step_is_refused_with_what_to_do(bad, message):
    from dataclasses import replace

    with pytest.raises(s.SagaRuleError, match=message):
        s.register_step(replace(_notify(), **bad), after="create_order")
    with pytest.raises(s.SagaRuleError, match="before the pivot"):
        s.register_step(_notify(), after="confirm_order")
    assert s.current_steps() == s.ORDER_SAGA


def test_a_projections_event_types_are_its_handler_table():
    for p in PROJECTIONS.values():
        assert p.event_types == frozenset(p.handlers) and p.event_types, p.name

    def placed(e: RecordedEvent) -> list:
        return [Put("per_user", e.data["user_id"], {"n": 1}, e.position)]

    p = Projection("per-user", ("per_user",), {"OrderPlaced": placed})
    at = "2026-01-01T00:00:00+00:00"
    e = RecordedEvent("id", "order-1", 1, 7, "OrderPlaced", 1, {"user_id": "u"}, {}, at)
    other = RecordedEvent("id2", "order-1", 2, 8, "OrderConfirmed", 1, {}, {}, at)
    assert p.project(e) == [Put("per_user", "u", {"n": 1}, 7)] and p.project(other) == []
    with pytest.raises(ValueError, match="needs handlers"):
        Projection("empty", ("x",), {})


def test_an_effect_two_steps_may_leave_is_told_apart_by_its_writer():
    assert s.effect_of("OrderWithdrawn", "inventory-service") == ("reserve_stock", "compensation")
    assert s.effect_of("OrderWithdrawn", "payment-service") == ("charge_payment", "compensation")
    assert s.effect_of("OrderPlaced", "?") == ("create_order", "action")
    assert s.effect_of("UserCreated", "command-service") is None
