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

Exact, as payment APIs do it: the reply is stored with a *fingerprint* of the request it
answered (`fingerprint`). The same key with the same request gets the first answer again; the
same key with a different request is refused (`KeyReused`, HTTP 422 `idempotency_key_reused`)
instead of being told that something it did not ask for happened. A key is scoped to its
endpoint and resource (`charge/<order_id>`), so the same key at another endpoint or for
another resource is another request.
"""

from __future__ import annotations

import hashlib
import json
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


#: Reason of the 422 for a key reused with a different request.
KEY_REUSED = "idempotency_key_reused"


def fingerprint(request: object) -> str:
    """A short, stable digest of a request's content (canonical JSON: key order ignored)."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class KeyReused(ValueError):
    """The key answered another request at this endpoint before."""

    def __init__(self, endpoint: str, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used at {endpoint} for a different request; a key "
            "names one request: send the same request again to get its answer, or use a new key")
        self.endpoint, self.key = endpoint, key

    def as_body(self) -> dict[str, Any]:
        return {"detail": str(self), "reason": KEY_REUSED, "errors": [
            {"field": "Idempotency-Key", "message": "used before for a different request",
             "type": KEY_REUSED}]}


def reply_metadata(endpoint: str, key: str, status: int, body: Mapping[str, Any],
                   request: str | None = None) -> dict[str, Any]:
    """Event metadata that records the answer given to `key` at `endpoint` (and the
    fingerprint of the request it answered)."""
    reply: dict[str, Any] = {"endpoint": endpoint, "status": status, "body": dict(body)}
    if request is not None:
        reply["request"] = request
    return {"idempotency_key": key, REPLY: reply}


class Replies:
    """The first reply per (endpoint, key), bounded: the oldest keys are forgotten first."""

    def __init__(self, limit: int = MAX_REPLIES) -> None:
        self.limit = limit
        self._replies: OrderedDict[tuple[str, str], tuple[int, dict[str, Any], str | None]] = (
            OrderedDict())

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, endpoint: str, key: str, request: str | None = None
            ) -> tuple[int, dict[str, Any]] | None:
        """The first reply to `key` at `endpoint`. Raises `KeyReused` when it answered another
        request (`request`: this one's fingerprint; replies recorded without one match any)."""
        hit = self._replies.get((endpoint, key))
        if hit is None:
            return None
        status, body, first = hit
        if request is not None and first is not None and first != request:
            raise KeyReused(endpoint, key)
        return status, body

    def record(self, endpoint: str, key: str, status: int, body: Mapping[str, Any],
               request: str | None = None) -> None:
        """Remember the reply unless one is known: the first answer always wins."""
        ident = (endpoint, key)
        if ident in self._replies:
            return
        self._replies[ident] = (status, dict(body), request)
        if len(self._replies) > self.limit:
            self._replies.popitem(last=False)

    def observe(self, metadata: Mapping[str, Any]) -> None:
        """Learn the reply an event's metadata recorded (events without one are ignored)."""
        reply = metadata.get(REPLY)
        key = metadata.get("idempotency_key")
        if isinstance(reply, dict) and isinstance(key, str):
            self.record(str(reply.get("endpoint", "")), key, int(reply.get("status", 200)),
                        reply.get("body") or {}, reply.get("request"))
