"""Idempotency, without I/O: deterministic event ids and the replies a request key earned.

Two mechanisms make a retried request safe:

- *Deterministic event ids.* An effect that must happen at most once (the charge for an order,
  the hold of a SKU for an order, the seeding of a SKU) gets an id computed from what it is
  about: `event_id("payment", "charge", order_id)`. The event store stores an id once, so a
  retry, a concurrent duplicate or a second replica cannot apply the effect twice.
- *Recorded replies.* The first answer to an `Idempotency-Key` is written into the metadata of
  the event the request appended (`reply_metadata`), in the same append as the effect. A
  service folding its events rebuilds `Replies`, so a retry with the same key gets the same
  status and body even after a restart, and even if the state changed since.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

#: The namespace of every deterministic event id labkit's participants compute.
NAMESPACE = uuid.UUID("8f0b7a52-2b1e-4d6c-9a44-5c1f3e0d7b21")
#: Metadata field that carries a request's recorded reply.
REPLY = "reply"
#: Replies kept in memory per service (older keys fall back to the aggregate's state).
MAX_REPLIES = 100_000


def event_id(*parts: str) -> str:
    """A UUID that depends only on `parts`: the same effect always gets the same id."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def request_event_id(service: str, key: str, n: int = 0) -> str:
    """The id of the n-th event a request with this Idempotency-Key appends."""
    return event_id(service, "request", key, str(n))


def reply_metadata(endpoint: str, key: str, status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """Event metadata that records the answer given to `key` at `endpoint`."""
    return {"idempotency_key": key, REPLY: {"endpoint": endpoint, "status": status,
                                            "body": dict(body)}}


class Replies:
    """The first reply per (endpoint, key), bounded: the oldest keys are forgotten first."""

    def __init__(self, limit: int = MAX_REPLIES) -> None:
        self.limit = limit
        self._replies: OrderedDict[tuple[str, str], tuple[int, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, endpoint: str, key: str) -> tuple[int, dict[str, Any]] | None:
        return self._replies.get((endpoint, key))

    def record(self, endpoint: str, key: str, status: int, body: Mapping[str, Any]) -> None:
        """Remember the reply unless one is known: the first answer always wins."""
        ident = (endpoint, key)
        if ident in self._replies:
            return
        self._replies[ident] = (status, dict(body))
        if len(self._replies) > self.limit:
            self._replies.popitem(last=False)

    def observe(self, metadata: Mapping[str, Any]) -> None:
        """Learn the reply an event's metadata recorded (events without one are ignored)."""
        reply = metadata.get(REPLY)
        key = metadata.get("idempotency_key")
        if isinstance(reply, dict) and isinstance(key, str):
            self.record(str(reply.get("endpoint", "")), key, int(reply.get("status", 200)),
                        reply.get("body") or {})
