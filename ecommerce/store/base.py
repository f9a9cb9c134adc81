"""The event store interface shared by the SQLite and PostgreSQL recorders.

Versions are 1-based inside a stream (an empty stream is at version 0); global positions are
1-based and strictly increasing in commit order, so a reader that remembers the last position
it saw never skips an event.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from ecommerce.domain.events import (
    EncodedEvent,
    EventValidationError,
    NewEvent,
    RecordedEvent,
    UpcasterRegistry,
    encode_event,
    validate_stream_id,
)
from ecommerce.domain.schemas import default_upcasters
from ecommerce.store.wakeup import PollWaiter, Waiter

NO_STREAM: Final = "none"
ANY: Final = "any"
ExpectedVersion = int | Literal["none", "any"]
#: The largest position or version a store holds: both are signed 64-bit integers (SQLite
#: INTEGER, PostgreSQL bigint).
MAX_INT64: Final = 2**63 - 1


class ConcurrencyError(Exception):
    """The stream is not at the version the writer expected: re-read it and retry."""

    def __init__(self, stream_id: str, expected: ExpectedVersion, actual: int) -> None:
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        shown = "no stream" if expected == NO_STREAM else f"version {expected}"
        super().__init__(
            f"stream {stream_id!r}: expected {shown}, but it is at version {actual}. "
            "Re-read the stream and retry with the current version."
        )


class DuplicateEventError(Exception):
    """Some, but not all, of a batch's event ids are already stored (or in another stream)."""


class StoreUnavailableError(Exception):
    """The database cannot be reached; the message says which and what to do."""


@dataclass(frozen=True)
class AppendResult:
    stream_id: str
    #: The global positions of the appended events, in order.
    positions: tuple[int, ...]
    #: The stream's version after the append (the version of the last event).
    version: int
    #: False when every event id was already stored: an idempotent retry that wrote nothing.
    written: bool = True
    #: When the store recorded the events (one time for the whole batch, as `recorded_at` reads
    #: them back), so a writer can fold them without reading them again; None on a retry.
    recorded_at: datetime | str | None = None

    @property
    def last_position(self) -> int:
        return self.positions[-1]


def parse_expected_version(value: object) -> ExpectedVersion:
    """Accept `"none"`, `"any"` or a non-negative int (also as a numeric string)."""
    if isinstance(value, bool):
        raise EventValidationError(f"expected_version must be 'none', 'any' or an int; got {value!r}")
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in (NO_STREAM, ANY):
            return lowered  # type: ignore[return-value]
        if lowered.isdigit():
            value = int(lowered)
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT64:
            raise EventValidationError(f"expected_version must be between 0 and {MAX_INT64} "
                                       "(0 means an empty stream)")
        return value
    raise EventValidationError(
        f"expected_version must be 'none' (stream must not exist), 'any', or the stream's "
        f"current version as an int; got {value!r}"
    )


def prepare_append(
    stream_id: object, events: Sequence[NewEvent], expected_version: object
) -> tuple[str, list[EncodedEvent], ExpectedVersion]:
    """Validate everything before touching the database, so bad input writes nothing."""
    stream = validate_stream_id(stream_id)
    expected = parse_expected_version(expected_version)
    if isinstance(events, NewEvent):
        events = [events]
    if not events:
        raise EventValidationError("append needs at least one event")
    encoded = [encode_event(e) for e in events]
    ids = [e.id for e in encoded]
    if len(set(ids)) != len(ids):
        raise EventValidationError("the batch contains the same event id twice")
    return stream, encoded, expected


class EventStore(abc.ABC):
    """Append-only log of streams with expected-version concurrency and a global order."""

    #: "sqlite" or "postgres"
    backend: str = ""

    def __init__(self, registry: UpcasterRegistry | None = None) -> None:
        self.upcasters = registry if registry is not None else default_upcasters()

    @abc.abstractmethod
    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append atomically; raise `ConcurrencyError` on a stale expected version."""

    @abc.abstractmethod
    def _read_stream(self, stream_id: str, from_version: int) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    def _read_all(
        self, after_position: int, limit: int, stream_prefix: str | None, types: Sequence[str] | None
    ) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 if it does not exist)."""

    @abc.abstractmethod
    def last_position(self) -> int:
        """The highest global position committed (0 for an empty store)."""

    @abc.abstractmethod
    def count_events(self, after_position: int = 0, upto_position: int | None = None) -> int:
        """How many events have after_position < position <= upto_position (None: the head)."""

    @abc.abstractmethod
    def log_id(self) -> str:
        """This log's identity: a random id made when the log was created (or wiped).

        A read model remembers the id of the log it was built from, so a projector can tell a
        log that was replaced (deleted and re-created, restored, wiped) from the one it knew,
        even once the new log has grown past the old checkpoints.
        """

    @abc.abstractmethod
    def stats(self) -> dict[str, object]:
        """Counts for humans: events, streams, last position, events per type."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def wipe(self) -> None:
        """Delete every event (lab reset). Not part of normal operation."""

    def read_stream_as_stored(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """A stream's events exactly as the log holds them (no upcasting)."""
        validate_stream_id(stream_id)
        return self._read_stream(stream_id, from_version)

    def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """A stream's events with version >= from_version, oldest first, upcast to current."""
        stream = validate_stream_id(stream_id)
        return self.upcasters.upcast_all(self._read_stream(stream, from_version))

    def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        stream_prefix: str | None = None,
        types: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to `limit` events with position > after_position, in position order, upcast."""
        if limit < 1:
            raise EventValidationError("limit must be >= 1")
        return self.upcasters.upcast_all(self._read_all(after_position, limit, stream_prefix, types))

    def read_all_and_head(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        stream_prefix: str | None = None,
        types: Sequence[str] | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        """`read_all`, and the log's head as that read saw it: every event at or below the
        head was visible to it, so a follower whose read came back short (fewer than `limit`)
        may move its cursor to the head, past the events its filter left out, without ever
        skipping one it wants (positions are committed in order). This default reads the head
        first, then the events (two reads); a store may do both in one."""
        head = self.last_position()
        events = self.read_all(after_position, limit, stream_prefix=stream_prefix, types=types)
        return events, max([head, *(e.position for e in events[-1:])])

    def stream_all(self, after_position: int = 0, limit: int = 1000) -> Iterator[RecordedEvent]:
        """`read_all` as an iterator, upcast. A backend may yield the events as its cursor
        reads them (`_stream_all`), so a consumer that handles one event at a time (the
        projector) never holds the whole batch."""
        if limit < 1:
            raise EventValidationError("limit must be >= 1")
        return self.upcasters.upcast_each(self._stream_all(after_position, limit))

    def _stream_all(self, after_position: int, limit: int) -> Iterable[RecordedEvent]:
        """What `stream_all` upcasts; by default the list `_read_all` returns."""
        return self._read_all(after_position, limit, None, None)

    def iter_all(self, after_position: int = 0, batch: int = 1000) -> Iterator[RecordedEvent]:
        """Every event after `after_position`, fetched in batches."""
        while True:
            events = self.read_all(after_position, batch)
            if not events:
                return
            yield from events
            after_position = events[-1].position

    def waiter(self, interest: Callable[[str, Sequence[str]], bool] | None = None, *,
               types: Sequence[str] | None = None, idle_max: float | None = None,
               busy: float = 0.0, gather: float = 0.0) -> Waiter:
        """How a follower of this log waits between polls (`ecommerce.store.wakeup`).

        This default polls every `busy` s while events come, and backs off at rest (up to
        `idle_max`, default 250 ms);
        PostgreSQL wakes the follower at each append it is interested in: one carrying one of
        `types` (None: any type) for which `interest(stream id, event types)` holds (None:
        every such append), and waits `gather` s more while appends keep coming (polling
        stores wait `busy` s then anyway).
        """
        return PollWaiter(maximum=idle_max, busy=busy)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
