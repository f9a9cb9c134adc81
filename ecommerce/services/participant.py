"""What the saga participants share: state kept current from the log, and idempotent replies.

Each participant folds the events it owns into memory once, then *catches up* before every
request: `read_all_and_head(after=<last position seen>)` returns only what is new, usually
nothing or a few events, and the head of the log, where the next read starts. Decisions are
made on that state under one lock per process and appended with an expected version, so
another replica's concurrent write is a `ConcurrencyError`: catch up and decide again
(`Participant.run`). What a service appended is folded right away and skipped when
the catch-up meets it in the log (never applied twice). A request thus costs one small query
plus its appends.

Replies: a request's first answer is stored with the event it appended (see
`ecommerce.domain.idempotency`) and, for answers that appended nothing, in memory, together
with the fingerprint of the request; a request carrying the same `Idempotency-Key` and the
same content gets that answer again, one with other content 422 `idempotency_key_reused`.

An event the fold cannot read (a shape the domain does not know) stops the catch-up just
before it: every request answers 503 `unreadable_event` naming it, and `/readyz` fails, until
an operator parks it (`labkit events park`); a parked event that cannot be read is skipped, as
the projector skips it. The process starts either way, to say so.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ecommerce.domain.events import (
    NewEvent,
    RecordedEvent,
    UnreadableEventError,
    encode_event,
    iso_utc,
)
from ecommerce.domain.idempotency import KeyReused, Replies, fingerprint, reply_metadata
from ecommerce.projections.parking import parked_positions
from ecommerce.store.base import (
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    ExpectedVersion,
)

#: How many times a decision is retried after a concurrent writer moved a stream.
RETRIES = 20
BATCH = 2000

log = logging.getLogger("participant")
T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """A request's idempotency key (the client's `Idempotency-Key`, else a fresh one) and the
    fingerprint of what the request asked for."""

    value: str
    given: bool
    request: str | None = None

    @classmethod
    def of(cls, header: str | None, request: object = None) -> Key:
        """`request`: the request's content (its parsed body, path ids), to tell a retry from
        a different request that reuses the key."""
        fp = fingerprint(request)
        if header:
            return cls(header, True, fp)
        return cls(str(uuid.uuid4()), False, fp)


class Participant:
    """In-memory state of one service, caught up from the event store, plus its replies."""

    def __init__(
        self,
        store: EventStore,
        apply: Callable[[RecordedEvent], None],
        *,
        stream_prefix: str | None = None,
        types: Sequence[str] | None = None,
        read_back: bool = False,
    ) -> None:
        """`read_back`: fold this service's own appends with the time the store recorded them
        (needed when the state shows `recorded_at`): the append's answer carries it, and only
        a store that does not say is read again."""
        self.store = store
        self._apply = apply
        self.prefix, self.types = stream_prefix, list(types) if types else None
        self.read_back = read_back
        self.replies = Replies()
        #: Held while deciding and appending: one decision at a time in this process.
        self.lock = threading.RLock()
        #: Every event of ours at or below it is folded.
        self.position = 0
        #: Positions of our own appends folded already (ahead of `position`): skip them once.
        self._ahead: set[int] = set()
        #: Parked events the fold could not read, skipped (each logged once).
        self._skipped: set[int] = set()

    def catch_up(self) -> int:
        """Fold every new event of this service; returns how many there were."""
        with self.lock:
            seen = 0
            while True:
                # The read says how far the log went (`read_all_and_head`): once it comes back
                # short, the position jumps there, past the other services' events, so the next
                # read scans only what was appended since.
                batch, head = self.store.read_all_and_head(
                    self.position, BATCH, stream_prefix=self.prefix, types=self.types)
                ahead = self._ahead
                for e in batch:
                    if ahead and e.position in ahead:
                        ahead.discard(e.position)
                        continue
                    try:
                        self._fold(e)
                    except Exception as exc:
                        self.position = max(self.position, e.position - 1)  # folded so far
                        self._past_unreadable(e, exc)
                seen += len(batch)
                if len(batch) < BATCH:
                    self.position = max(self.position, head)
                    if ahead:
                        self._ahead = {p for p in ahead if p > self.position}
                    return seen
                self.position = batch[-1].position

    def _past_unreadable(self, e: RecordedEvent, exc: Exception) -> None:
        """Go on past `e`, which the fold could not read, if it is parked; else stop there."""
        error = exc if isinstance(exc, UnreadableEventError) else UnreadableEventError(e, exc)
        if e.position not in parked_positions(self.store):
            raise error from exc
        if e.position not in self._skipped:
            self._skipped.add(e.position)
            log.warning("skipped a parked event it cannot read: %s", error)

    def start(self) -> bool:
        """The first catch-up, when the process starts. An unreadable event does not keep it
        from starting (it must answer, to say which event stops it): logged, and False."""
        try:
            self.catch_up()
        except UnreadableEventError as exc:
            log.error("stopped at an event it cannot read: %s", exc)
            return False
        return True

    def ready(self) -> None:
        """For `/readyz`: raises `UnreadableEventError` while an event stops the catch-up."""
        self.catch_up()

    def _fold(self, e: RecordedEvent) -> None:
        self._apply(e)
        if "reply" in e.metadata:
            self.replies.observe(e.metadata)

    def append(self, stream: str, events: NewEvent | Sequence[NewEvent],
               expected: ExpectedVersion) -> AppendResult:
        """Append, and fold what was appended exactly once (no round trip to re-read the log,
        see `read_back`). The expected version guarantees that the state of that stream was
        current, so folding our events ahead of other streams' newer events is safe."""
        batch = [events] if isinstance(events, NewEvent) else list(events)
        with self.lock:
            try:
                result = self.store.append(stream, batch, expected)
            except BaseException:
                self.catch_up()
                raise
            if not result.written:  # stored before (maybe folded already): the log decides
                self.catch_up()
                return result
            for e in self._recorded(stream, batch, result):
                if e.position > self.position and e.position not in self._ahead:
                    self._ahead.add(e.position)
                    self._fold(e)
            return result

    def _recorded(self, stream: str, batch: list[NewEvent],
                  result: AppendResult) -> list[RecordedEvent]:
        first = result.version - len(batch) + 1
        if self.read_back and result.recorded_at is None:
            return self.store.read_stream(stream, first)[:len(batch)]
        now = result.recorded_at or iso_utc()
        out = []
        for n, (ev, pos) in enumerate(zip(batch, result.positions, strict=True)):
            enc = encode_event(ev)
            out.append(RecordedEvent(enc.id, stream, first + n, pos, enc.type, enc.schema_version,
                                     enc.data_json, enc.metadata_json, now))
        return out

    def run(self, attempt: Callable[[], JSONResponse]) -> JSONResponse:
        """Catch up and run `attempt` under the lock; after a concurrent write (another replica
        moved a stream: `ConcurrencyError`) catch up and run it again. Attempts must be safe to
        rerun, which deterministic event ids make them. A `DuplicateEventError` (the id is
        stored in another stream: another replica decided first) is retried the same way."""
        with self.lock:
            for n in range(RETRIES):
                self.catch_up()
                try:
                    return attempt()
                except (ConcurrencyError, DuplicateEventError):
                    if n == RETRIES - 1:
                        raise
        raise AssertionError("unreachable")

    # -- replies -----------------------------------------------------------------------------

    def replay(self, endpoint: str, key: Key) -> JSONResponse | None:
        """The first reply to this key at this endpoint, if there was one; 422
        `idempotency_key_reused` if the key answered a different request there."""
        try:
            hit = self.replies.get(endpoint, key.value, key.request) if key.given else None
        except KeyReused as exc:
            return JSONResponse(exc.as_body(), status_code=422)
        return None if hit is None else JSONResponse(hit[1], status_code=hit[0])

    def answer(self, endpoint: str, key: Key, status: int, body: Mapping[str, Any]) -> JSONResponse:
        """Reply, and remember it for the key (answers that appended no event live in memory)."""
        if key.given:
            self.replies.record(endpoint, key.value, status, body, key.request)
        return JSONResponse(dict(body), status_code=status)

    def refuse(self, endpoint: str, key: Key, status: int, reason: str, message: str,
               **extra: Any) -> JSONResponse:
        return self.answer(endpoint, key, status, {"detail": message, "reason": reason, **extra})

    @staticmethod
    def with_reply(event: NewEvent, endpoint: str, key: Key, status: int,
                   body: Mapping[str, Any], **meta: Any) -> NewEvent:
        """The event carrying the reply it produced (only for a client's key)."""
        metadata = dict(event.metadata) | meta
        if key.given:
            metadata |= reply_metadata(endpoint, key.value, status, body, key.request)
        return replace(event, metadata=metadata)


def fold_past_parked(store: EventStore, events: list[RecordedEvent],
                     fold: Callable[[list[RecordedEvent]], T]) -> T:
    """`fold(events)`, leaving out each event it cannot read that is parked (as the catch-up
    and the projector do); an unreadable event that is not parked stops it."""
    parked: set[int] | None = None
    while True:
        try:
            return fold(events)
        except UnreadableEventError as exc:
            parked = parked_positions(store) if parked is None else parked
            if exc.position not in parked:
                raise
            events = [e for e in events if e.position != exc.position]


def install_store_errors(app: FastAPI) -> None:
    """Database trouble is a 503 (retry later), a foreign event id a 409: never a bare 500."""

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the event store is not usable right now: {exc}",
                             "reason": "store_unavailable"}, status_code=503)

    async def duplicate(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "duplicate_event"}, status_code=409)

    app.add_exception_handler(sqlite3.OperationalError, unavailable)
    app.add_exception_handler(psycopg.OperationalError, unavailable)
    app.add_exception_handler(DuplicateEventError, duplicate)


__all__ = ["ConcurrencyError", "Key", "Participant", "install_store_errors"]
