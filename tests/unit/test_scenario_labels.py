"""A saga's chart label names what happened to it, like the scenarios, from its own state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ecommerce.domain import saga as s
from labkit.lab.scenarios import SCENARIOS, scenario_of


def state(**kw) -> s.SagaState:
    return replace(s.SagaState("x", status="completed"), **kw)


def attempts(step: str, n: int) -> tuple[s.Progress, ...]:
    return tuple(replace(p, attempts=n if st.name == step else 1)
                 for st, p in zip(s.ORDER_SAGA, s.SagaState("x").actions, strict=True))


@pytest.mark.parametrize(("st", "label"), [
    (state(), "happy"),
    (state(actions=attempts("reserve_stock", 4)), "inventory-flaky"),
    (state(faults={"crash_after": "reserve_stock:StepSucceeded"}), "orchestrator-crash"),
    (state(status="compensated", failure="declined", failed_step="charge_payment"),
     "payment-declined"),
    (state(status="compensated", failure="insufficient_stock", failed_step="reserve_stock"),
     "out-of-stock"),
    (state(status="compensated", failure="invalid_user", failed_step="validate_user"),
     "invalid-user"),
    (state(status="compensated", failure="deadline_exceeded", failed_step="charge_payment"),
     "payment-timeout"),
    (state(status="running"), "running"),
])
def test_scenario_of(st: s.SagaState, label: str) -> None:
    assert scenario_of(st) == label


def test_every_scenario_has_a_label_of_its_own_name() -> None:
    labels = {"happy", "inventory-flaky", "orchestrator-crash", "payment-declined",
              "out-of-stock", "invalid-user", "payment-timeout"}
    assert labels == set(SCENARIOS)


def test_a_saga_with_a_plugin_step_is_labelled_by_its_own_steps() -> None:
    # 02's exercise adds notify_customer: such a saga has six actions, and its timeline and
    # `lab.saga.latest()` raised "zip() argument 2 is longer than argument 1"
    extra = s.StepDef("notify_customer", "user-service", "notify customer", None,
                      request=lambda saga: ("POST", "/api/plugins/notify_customer", {}))
    steps = (*s.ORDER_SAGA[:2], extra, *s.ORDER_SAGA[2:])

    def tries(step: str = "") -> tuple[s.Progress, ...]:
        return tuple(replace(s.Progress(), attempts=3 if st.name == step else 1) for st in steps)

    assert scenario_of(state(steps=steps, actions=tries())) == "happy"
    assert scenario_of(state(steps=steps, actions=tries("notify_customer"))) == "retried"
    assert scenario_of(state(steps=steps, actions=tries("reserve_stock"))) == "inventory-flaky"
