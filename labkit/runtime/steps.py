"""The course's steps (00-base ... 04-event-sourcing) and which local process belongs to which.

The course builds the system up step by step: networking, then the saga's services, then CQRS,
then event sourcing. `labkit up --step 02-saga` / `lab.up(step="02-saga")` start that step and
the ones before it. Which process belongs to which step is read from the manifests (the
`labkit.io/step` label of the workload a process mirrors); the local gateway stands for the
Gateway / HTTPRoute / Ingress of 01-networking.
"""

from __future__ import annotations

from collections.abc import Iterable

from ecommerce.services.registry import SERVICES, ServiceSpec
from labkit.runtime.manifests import STEPS

#: The local process that stands for 01-networking's Gateway, HTTPRoute and Ingress.
GATEWAY = "gateway"
GATEWAY_STEP = "01-networking"


class UnknownStep(ValueError):
    """Not a step name; the message lists the steps."""


def workload_for(spec: ServiceSpec) -> str:
    """The manifest workload a local long-running process mirrors (`-follow` variants)."""
    return f"{spec.name}-follow" if "--follow" in spec.args else spec.name


def resolve(step: str) -> str:
    """`"02-saga"`, `"02"`, `"2"` or `"saga"` -> `"02-saga"`."""
    text = str(step).strip().lower()
    if text.isdigit():
        text = f"{int(text):02d}"
    hits = [s for s in STEPS if s == text or s.startswith(text) or s.split("-", 1)[1] == text]
    if len(hits) != 1:
        raise UnknownStep(f"unknown lab step {step!r}: use one of {', '.join(STEPS)}")
    return hits[0]


def up_to(step: str | None) -> list[str]:
    """The steps to start for `step`: it and every step before it (all when None)."""
    if step is None:
        return list(STEPS)
    return list(STEPS[: STEPS.index(resolve(step)) + 1])


def process_steps(names: Iterable[str] | None = None) -> dict[str, str]:
    """Local process -> its step, from the manifests' `labkit.io/step` labels."""
    from labkit.runtime.manifests import container_specs

    containers = container_specs()
    out: dict[str, str] = {}
    for name in names if names is not None else [*SERVICES, GATEWAY]:
        if name == GATEWAY:
            out[name] = GATEWAY_STEP
            continue
        spec = SERVICES.get(name)
        container = containers.get(workload_for(spec)) if spec else containers.get(name)
        if container is None and spec is not None:
            container = containers.get(spec.name)
        out[name] = container.step if container is not None else ""
    return out


def processes_for(step: str | None, names: Iterable[str] | None = None) -> list[str]:
    """The local processes `up(step)` starts, in the order given."""
    wanted = set(up_to(step))
    return [n for n, s in process_steps(names).items() if s in wanted]
