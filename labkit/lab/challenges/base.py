"""What every challenge is: a break, a story, hints, a probe of the fix, and a way back.

A challenge breaks the *running* lab in a way that happens in real systems (a route applied
with the wrong annotation, a participant that died at the pivot, a poison event, a checkpoint
moved by hand, a projector build that commits its checkpoint apart from its writes). `start`
does it and tells the story the way a user would report it: symptoms, never the cause. The
student diagnoses with the lab's own tools and fixes it with a real action. `check` then
*probes the system's behaviour* (sends requests, places orders, kills and restarts processes)
and never reads a flag; it says ✅, or ❌ with what it observed and what it expected, and never
raises. `give_up` repairs the lab the way the model answer does, so the invariants hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ecommerce.waiting import WaitTimeout, wait_until


class ChallengeError(RuntimeError):
    """A challenge cannot be started, checked or given up as asked; the message says why."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of `check`: ✅, or ❌ with what was observed and what was expected."""

    ok: bool
    observed: str
    expected: str = ""
    details: tuple[str, ...] = field(default_factory=tuple)
    #: What a ❌ says before the observation (a challenge not solved yet, unless told).
    status: str = "not done yet"

    def __str__(self) -> str:
        if self.ok:
            head = f"✅ {self.observed}"
        else:
            head = f"❌ {self.status}: {self.observed}"
            if self.expected:
                head += f"\n   expected: {self.expected}"
        return "\n".join([head, *(f"   - {d}" for d in self.details)])

    def __repr__(self) -> str:
        return str(self)

    def __bool__(self) -> bool:
        return self.ok

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "observed": self.observed, "expected": self.expected,
                "details": list(self.details)}


class Challenge:
    """One challenge. Subclasses set the texts and implement start, check and give_up."""

    #: `labkit challenge start NAME`.
    name: str = ""
    #: One line for the list.
    title: str = ""
    #: The course topic it belongs to (notebook).
    topic: str = ""
    #: The report as a user or a colleague would make it: symptoms, not the cause.
    story: str = ""
    #: Progressive hints: where to look first, ..., the fix itself last.
    hints: tuple[str, ...] = ()
    #: The lab's tools that show the cause (for the list and the notebook).
    tools: tuple[str, ...] = ()
    #: Breaks the lab with the participants' fault injection (`lab.faults`): `start` turns it
    #: on (`lab.up(faults=True)`, which restarts the participants if it was off).
    needs_faults: bool = False

    def start(self, lab: Any) -> dict[str, Any]:
        """Break the running lab; return what `check` and `give_up` need to know."""
        raise NotImplementedError

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        """Probe whether the system behaves correctly again. Never raises."""
        raise NotImplementedError

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        """Repair the lab (the model answer's fix); return what was done."""
        raise NotImplementedError

    def briefing(self, context: dict[str, Any]) -> str:
        """The story, with this run's details (`{name}` fields from the context)."""
        try:
            return self.story.format(**context)
        except (KeyError, IndexError):
            return self.story


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str,
             interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy (and return that); an exception
    counts as "not yet" (a service restarting). ChallengeError saying what did not happen
    after `timeout` seconds."""

    def attempt() -> Any:
        try:
            return condition()
        except Exception:
            return None

    try:
        return wait_until(attempt, timeout=timeout, interval=interval, what=what)
    except WaitTimeout:
        raise ChallengeError(f"{what} did not happen within {timeout:.0f}s; is the lab "
                             "running? (`labkit status`)") from None


def probe_user(lab: Any, label: str) -> tuple[str, int]:
    """Create a user through command-service; its id and the position of its event."""
    stamp = time.time_ns()
    accepted = lab.command("create-user", name=f"{label} {stamp % 100000}",
                           email=f"{label.lower().replace(' ', '-')}.{stamp}@example.com")
    return str(accepted["user_id"]), int(accepted["position"])


def visible(lab: Any, user_id: str) -> bool:
    """Does query-service (the read side) show this user?"""
    return lab.http("query-service").get(f"/api/queries/users/{user_id}").status_code == 200


def require_local(lab: Any, challenge: Challenge) -> None:
    if getattr(lab, "mode", "local") != "local":
        raise ChallengeError(
            f"challenge {challenge.name!r} is n/a in cluster mode: it breaks the lab's local "
            "processes (run it with LABKIT_MODE=local)")
