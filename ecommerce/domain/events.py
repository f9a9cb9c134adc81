"""Events: what is appended (`NewEvent`), what is read back (`RecordedEvent`), and upcasting.

An event's data has a schema version. When a schema changes, register an upcaster that turns
version N into version N+1; readers always see the newest version, while the log keeps what
was written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The decoder's C scanner (an attribute `JSONDecoder.__init__` sets; typeshed does not list it).
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """Decode JSON that labkit itself encoded (compact, no surrounding whitespace).

    Calls the C scanner directly, skipping `json.loads`' whitespace regex and checks.
    """
    try:
        return _scan_once(text, 0)[0]
    except StopIteration:
        return json.loads(text)  # unusual input: let the full decoder explain the error

def iso_utc(moment: datetime | None = None) -> str:
    """`moment` (default: now, in UTC) as ISO-8601 text that always carries microseconds.

    `datetime.isoformat()` drops a zero microsecond ("...:51+00:00" beside "...:51.000123+00:00");
    a reader that takes its format from the first row of a column (pandas' `to_datetime`)
    then fails on that one row, one stamp in a million. Every stored stamp goes through here.
    """
    return (moment or datetime.now(UTC)).isoformat(timespec="microseconds")

#: The encoder's C function, made once (`JSONEncoder.encode` makes a new one at every call);
#: None where the json module has no C accelerator.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_c = None if _c_make_encoder is None else _c_make_encoder(
    None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ":", ",",
    False, False, True)
_encode_py = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def compact_dumps(value: Any) -> str:
    """`json.dumps(value, separators=(",", ":"))` for read-model documents, at C speed.

    Calls the C encoder made once (no circular-reference check: documents are trees); a value
    that is not JSON-serialisable raises TypeError as `json.dumps` does.
    """
    if _encode_c is None:
        return _encode_py(value)
    return "".join(_encode_c(value, 0))


#: Largest encoded size (data + metadata, as UTF-8 JSON) accepted for one event.
MAX_EVENT_BYTES = 64 * 1024
#: Longest stream id accepted.
MAX_STREAM_ID_LENGTH = 200


class EventValidationError(ValueError):
    """An event or append request is malformed; nothing was written."""


class UpcastError(Exception):
    """An upcaster (a plugin's) failed on an event or returned something that is not data;
    the message names the upcaster, the plugin and what to do."""


class UnreadableEventError(Exception):
    """A stored event that a service's fold cannot read: a producer wrote a shape the domain
    does not know (`labkit events append` with data of its own, another team's script).

    The log is append-only, so the event stays; the reader stops at it and says how to go on:
    park it (`EventParked`), after which readers skip it wherever it fails, as the projector
    does (`ecommerce.projections.parking`).
    """

    def __init__(self, event: RecordedEvent, cause: BaseException) -> None:
        self.position, self.stream_id, self.type = event.position, event.stream_id, event.type
        why = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        super().__init__(
            f"event #{event.position} ({event.type} in {event.stream_id}) cannot be read ({why}). "
            f"The log is append-only: if that event must not count, park it: labkit events "
            f"park {event.position} --reason '...' (or lab.park_event({event.position}, '...'))")


@dataclass(frozen=True)
class NewEvent:
    """An event to append. `id` makes retries idempotent: the same id is stored once."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    schema_version: int = 1


class RecordedEvent:
    """An event as stored: its place in its stream (`version`) and in the global log.

    Recorders may pass `data` / `metadata` as raw JSON text and `recorded_at` as ISO text: they
    are decoded on first access, so a replay that never looks at metadata never pays for it.
    """

    __slots__ = ("_data", "_metadata", "_recorded", "id", "position", "schema_version",
                 "stream_id", "type", "version")

    def __init__(
        self,
        id: str,
        stream_id: str,
        version: int,
        position: int,
        type: str,
        schema_version: int,
        data: dict[str, Any] | str,
        metadata: dict[str, Any] | str,
        recorded_at: datetime | str,
    ) -> None:
        self.id = id
        self.stream_id = stream_id
        self.version = version
        self.position = position
        self.type = type
        self.schema_version = schema_version
        self._data = data
        self._metadata = metadata
        self._recorded = recorded_at

    @property
    def data(self) -> dict[str, Any]:
        d = self._data
        if isinstance(d, str):
            try:  # `_loads`, inline: replay reads this once per event
                d = _scan_once(d, 0)[0]
            except StopIteration:
                d = json.loads(d)
            self._data = d
        return d

    @property
    def metadata(self) -> dict[str, Any]:
        m = self._metadata
        if isinstance(m, str):
            m = self._metadata = _loads(m)
        return m

    @property
    def recorded_at(self) -> datetime:
        r = self._recorded
        if isinstance(r, str):
            r = self._recorded = datetime.fromisoformat(r)
        return r

    @property
    def recorded_iso(self) -> str:
        """The recorded time as ISO-8601 text in UTC (cheap: no datetime round trip)."""
        r = self._recorded
        return r if isinstance(r, str) else iso_utc(r)

    def replace(self, **changes: Any) -> RecordedEvent:
        fields: dict[str, Any] = {
            "id": self.id, "stream_id": self.stream_id, "version": self.version,
            "position": self.position, "type": self.type, "schema_version": self.schema_version,
            "data": self._data, "metadata": self._metadata, "recorded_at": self._recorded,
        }
        fields.update(changes)
        return RecordedEvent(**fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return (self.id, self.stream_id, self.version, self.position, self.type,
                self.schema_version, self.data, self.metadata, self.recorded_at) == (
            other.id, other.stream_id, other.version, other.position, other.type,
            other.schema_version, other.data, other.metadata, other.recorded_at)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"RecordedEvent(position={self.position}, stream_id={self.stream_id!r}, "
                f"version={self.version}, type={self.type!r}, schema_version={self.schema_version}, "
                f"data={self.data!r}, id={self.id!r})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.id,
            "stream_id": self.stream_id,
            "version": self.version,
            "position": self.position,
            "event_type": self.type,
            "schema_version": self.schema_version,
            "data": self.data,
            "metadata": self.metadata,
            "recorded_at": self.recorded_iso,
        }


def validate_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not stream_id.strip():
        raise EventValidationError(
            "stream id must be a non-empty string such as 'user-42'; got " + repr(stream_id)
        )
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise EventValidationError(
            f"stream id is {len(stream_id)} characters; the limit is {MAX_STREAM_ID_LENGTH}"
        )
    return stream_id


@dataclass(frozen=True)
class EncodedEvent:
    """A validated event with its JSON already encoded, ready for a recorder."""

    id: str
    type: str
    schema_version: int
    data_json: str
    metadata_json: str


def encode_event(event: NewEvent) -> EncodedEvent:
    """Validate and JSON-encode one event, or raise `EventValidationError`."""
    if not isinstance(event, NewEvent):
        raise EventValidationError(f"expected a NewEvent, got {type(event).__name__}")
    if not isinstance(event.type, str) or not event.type:
        raise EventValidationError("event type must be a non-empty string such as 'UserCreated'")
    if not isinstance(event.schema_version, int) or event.schema_version < 1:
        raise EventValidationError("schema_version must be an integer >= 1")
    try:
        event_id = str(uuid.UUID(str(event.id)))
    except ValueError:
        raise EventValidationError(f"event id must be a UUID; got {event.id!r}") from None
    try:
        data_json = json.dumps(dict(event.data), separators=(",", ":"), allow_nan=False)
        metadata_json = json.dumps(dict(event.metadata), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventValidationError(
            f"event {event.type!r} is not JSON-serialisable ({exc}); "
            "use str, int, float, bool, None, lists and dicts only"
        ) from None
    size = len(data_json.encode()) + len(metadata_json.encode())
    if size > MAX_EVENT_BYTES:
        raise EventValidationError(
            f"event {event.type!r} is {size} bytes encoded; the limit is {MAX_EVENT_BYTES} bytes. "
            "Store large payloads elsewhere and put a reference in the event."
        )
    return EncodedEvent(event_id, event.type, event.schema_version, data_json, metadata_json)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UpcasterRegistry:
    """Functions that lift an event type's data from schema version N to N+1."""

    def __init__(self) -> None:
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._types: frozenset[str] = frozenset()

    def add(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        self._upcasters[(event_type, from_version)] = fn
        self._types = frozenset(t for t, _ in self._upcasters)

    def remove(self, event_type: str, from_version: int) -> None:
        self._upcasters.pop((event_type, from_version), None)
        self._types = frozenset(t for t, _ in self._upcasters)

    @property
    def types(self) -> frozenset[str]:
        """Event types that have at least one upcaster."""
        return self._types

    def upcast_all(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """`upcast` each event; events of types without upcasters pass through untouched."""
        types = self._types
        if not types:
            return events
        up = self.upcast
        return [up(e) if e.type in types else e for e in events]

    def upcast_each(self, events: Iterable[RecordedEvent]) -> Iterator[RecordedEvent]:
        """`upcast_all` as an iterator: each event is upcast as it is taken."""
        fns = self._upcasters
        if not fns:
            return iter(events)
        up = self.upcast
        return (up(e) if (e.type, e.schema_version) in fns else e for e in events)

    def latest_version(self, event_type: str, version: int = 1) -> int:
        while (event_type, version) in self._upcasters:
            version += 1
        return version

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        fns = self._upcasters
        if not fns:
            return event
        version = event.schema_version
        if (event.type, version) not in fns:
            return event
        data = event.data
        while (fn := fns.get((event.type, version))) is not None:
            data = fn(dict(data))
            version += 1
        if version == event.schema_version:
            return event
        return event.replace(data=data, schema_version=version)


#: The registry the stores use unless given another one.
upcasters = UpcasterRegistry()
