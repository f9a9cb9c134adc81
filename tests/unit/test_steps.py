"""Which local process belongs to which course step, read from the manifests."""

from __future__ import annotations

import pytest

from ecommerce.services.registry import SERVICES
from labkit.runtime.manifests import STEPS, container_specs
from labkit.runtime.steps import (
    GATEWAY,
    UnknownStep,
    process_steps,
    processes_for,
    resolve,
    up_to,
    workload_for,
)


@pytest.mark.parametrize("text", ["02-saga", "02", "2", "saga", " SAGA "])
def test_resolve_accepts_names_numbers_and_short_names(text: str) -> None:
    assert resolve(text) == "02-saga"


def test_an_unknown_step_lists_the_steps() -> None:
    with pytest.raises(UnknownStep, match="00-base, 01-networking, 02-saga"):
        resolve("05-mesh")
    with pytest.raises(UnknownStep):
        resolve("")  # every step starts with "": ambiguous


def test_up_to_includes_the_steps_before() -> None:
    assert up_to("03") == ["00-base", "01-networking", "02-saga", "03-cqrs"]
    assert up_to(None) == list(STEPS)


def test_each_process_has_its_workloads_step_label() -> None:
    steps = process_steps()
    containers = container_specs()
    for name, spec in SERVICES.items():
        assert steps[name] == containers[workload_for(spec)].step, name
    assert steps[GATEWAY] == "01-networking"
    assert steps["user-service"] == "02-saga" and steps["command-service"] == "03-cqrs"
    assert steps["event-processor"] == "04-event-sourcing"


def test_processes_for_a_step_build_up_in_the_course_order() -> None:
    assert processes_for("00-base") == []
    assert processes_for("01") == [GATEWAY]
    saga = set(processes_for("02"))
    assert saga == {GATEWAY, "user-service", "order-service", "inventory-service",
                    "payment-service", "saga-orchestrator"}
    assert set(processes_for("03")) == saga | {"command-service", "query-service"}
    assert set(processes_for("04")) == set(SERVICES) | {GATEWAY}
