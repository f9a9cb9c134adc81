"""Parking a poison event: the operator's way past an event no projection can apply.

The log is immutable, so an event a projection fails on (a producer wrote a shape the
projection does not know) stops the projector at that position for good: every retry fails on
the same event, and nothing after it reaches the read model. An operator who has read the
event and decided it must not be projected *parks* it: an `EventParked` event in stream
`parked-<position>` (who, why, which event), appended like any other event, so the decision is
in the log itself and a replay makes the same one.

The projector consults the parked positions only when a projection fails on an event: a parked
event that fails is skipped for every projection (the batch is projected again without it, so
no projection keeps half of it); an event that projects fine is projected, parked or not. So an
incremental build and a replay of the same log give the same read model.

    labkit events park 1234 --reason "resent OrderConfirmed with a decimal-string total"
"""

from __future__ import annotations

import uuid
from typing import Any

from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.store.base import EventStore

EVENT_PARKED = "EventParked"
STREAM_PREFIX = "parked-"
#: Parking ids derive from the parked event's id: parking it twice stores one record.
_NAMESPACE = uuid.UUID("5f0d1c1e-8f4a-4c55-9d7e-3b1f2a6c0e11")


def stream_id(position: int) -> str:
    return f"{STREAM_PREFIX}{position}"


def parked_event(event: RecordedEvent, reason: str, by: str = "operator") -> NewEvent:
    """The `EventParked` for `event` (its id makes parking the same event twice a no-op)."""
    reason = str(reason).strip()
    if not reason:
        raise ValueError("say why the event is parked (reason), for whoever reads the log next")
    data: dict[str, Any] = {"position": event.position, "event_id": event.id,
                            "stream_id": event.stream_id, "event_type": event.type,
                            "reason": reason[:500], "by": by}
    return NewEvent(EVENT_PARKED, data, {"parked_by": by}, id=str(uuid.uuid5(_NAMESPACE, event.id)))


def park(store: EventStore, position: int, reason: str, by: str = "operator") -> dict[str, Any]:
    """Park the event at `position`; returns what was recorded, with `record_position` (where
    the parking record is in the log; None if it was parked already). Parking twice changes
    nothing."""
    found = store.read_all(position - 1, 1) if position > 0 else []
    if not found or found[0].position != position:
        raise ValueError(f"no event at position {position} (the log's head is "
                         f"{store.last_position()})")
    event = found[0]
    if event.stream_id.startswith(STREAM_PREFIX):
        raise ValueError(f"event {position} is itself a parking record; park the event it names")
    new = parked_event(event, reason, by)
    result = store.append(stream_id(position), [new], "any")
    return {**new.data, "record_position": result.positions[-1] if result.positions else None,
            "already_parked": not result.written}


def parked_positions(store: EventStore, batch: int = 5000) -> set[int]:
    """Every parked position in the log."""
    out: set[int] = set()
    after = 0
    while True:
        events = store.read_all(after, batch, stream_prefix=STREAM_PREFIX, types=[EVENT_PARKED])
        out.update(int(e.data["position"]) for e in events)
        if len(events) < batch:
            return out
        after = events[-1].position
