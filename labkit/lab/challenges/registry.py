"""Every challenge, in the course's order (networking, saga, CQRS, event sourcing)."""

from __future__ import annotations

from labkit.lab.challenges.base import Challenge, ChallengeError
from labkit.lab.challenges.poison_event import PoisonEvent
from labkit.lab.challenges.replaying_projector import ReplayingProjector
from labkit.lab.challenges.rewrite_target import RewriteTarget
from labkit.lab.challenges.skipped_events import SkippedEvents
from labkit.lab.challenges.stuck_saga import StuckSaga

CHALLENGES: dict[str, Challenge] = {c.name: c for c in (
    RewriteTarget(), StuckSaga(), SkippedEvents(), PoisonEvent(), ReplayingProjector())}


def get(name: str) -> Challenge:
    """The challenge called `name`; ChallengeError listing the names otherwise."""
    try:
        return CHALLENGES[name]
    except KeyError:
        raise ChallengeError(f"no challenge {name!r}; known: {', '.join(CHALLENGES)} "
                             "(`labkit challenge list`)") from None
