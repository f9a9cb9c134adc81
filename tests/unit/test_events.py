"""Events: validation before anything is written, upcasting old schema versions on read, and
recorded times in one fixed-width text format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ecommerce.domain import users
from ecommerce.domain.events import (
    MAX_EVENT_BYTES,
    EventValidationError,
    NewEvent,
    RecordedEvent,
    UpcasterRegistry,
    encode_event,
    iso_utc,
)
from ecommerce.store.base import parse_expected_version
from ecommerce.store.sqlite_events import SqliteEventStore


def test_expected_version_accepts_only_none_any_or_a_version() -> None:
    assert parse_expected_version("none") == "none"
    assert parse_expected_version("ANY") == "any"
    assert parse_expected_version(3) == 3
    assert parse_expected_version("3") == 3
    for bad in ("latest", -1, 1.5, True, None):
        with pytest.raises(EventValidationError, match="expected_version"):
            parse_expected_version(bad)


def test_an_expected_version_beyond_64_bits_is_refused_before_the_database(tmp_path) -> None:
    assert parse_expected_version(str(2**63 - 1)) == 2**63 - 1
    with SqliteEventStore(tmp_path / "events.db") as store:
        with pytest.raises(EventValidationError, match=f"between 0 and {2**63 - 1}"):
            store.append("user-1", [NewEvent("X", {})], 2**63)  # not SQLite's OverflowError
        assert store.last_position() == 0


def test_encode_rejects_what_json_cannot_hold_and_oversized_events() -> None:
    with pytest.raises(EventValidationError, match="JSON-serialisable"):
        encode_event(NewEvent("X", {"when": object()}))
    with pytest.raises(EventValidationError, match="JSON-serialisable"):
        encode_event(NewEvent("X", {"x": float("nan")}))
    with pytest.raises(EventValidationError, match=f"limit is {MAX_EVENT_BYTES}"):
        encode_event(NewEvent("X", {"blob": "a" * MAX_EVENT_BYTES}))
    with pytest.raises(EventValidationError, match="UUID"):
        encode_event(NewEvent("X", {}, id="not-a-uuid"))


def test_upcaster_chain_lifts_old_events_on_read(tmp_path) -> None:
    registry = UpcasterRegistry()
    registry.add("Renamed", 1, lambda d: {"full_name": d["name"]})
    registry.add("Renamed", 2, lambda d: {**d, "country": "KR"})
    store = SqliteEventStore(tmp_path / "e.db", registry=registry)
    store.append("s-1", [NewEvent("Renamed", {"name": "Kim"}, schema_version=1)], "none")
    store.append("s-1", [NewEvent("Renamed", {"full_name": "Lee", "country": "US"},
                                  schema_version=3)], 1)
    first, second = store.read_stream("s-1")
    assert (first.schema_version, first.data) == (3, {"full_name": "Kim", "country": "KR"})
    assert (second.schema_version, second.data) == (3, {"full_name": "Lee", "country": "US"})
    assert registry.latest_version("Renamed") == 3
    # The log keeps what was written: a store without upcasters sees version 1.
    raw = SqliteEventStore(tmp_path / "e.db", registry=UpcasterRegistry()).read_stream("s-1")[0]
    assert (raw.schema_version, raw.data) == (1, {"name": "Kim"})


def test_user_created_v1_is_upcast_to_v2_by_default(tmp_path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    store.append("user-7", [NewEvent(users.USER_CREATED, {"user_id": "7", "name": "Kim",
                                                          "email": "kim@example.com"})], "none")
    [event] = store.read_stream("user-7")
    assert event.schema_version == users.USER_CREATED_VERSION
    assert event.data["tier"] == "standard"
    assert users.fold("7", [event]).tier == "standard"


def test_a_recorded_time_on_a_whole_second_keeps_its_microseconds() -> None:
    """isoformat() drops a zero microsecond; one such stamp in a column of others made
    pandas' to_datetime fail (CI, 2026-11-30: "...T22:11:51+00:00" doesn't match format)."""
    whole = datetime(2026, 11, 30, 22, 11, 51, tzinfo=UTC)
    assert iso_utc(whole) == "2026-11-30T22:11:51.000000+00:00"
    # PostgreSQL's rows arrive as datetimes: their text goes through the same formatter.
    event = RecordedEvent("e1", "user-1", 1, 1, "UserCreated", 2, "{}", "{}", whole)
    assert event.recorded_iso == "2026-11-30T22:11:51.000000+00:00"
    assert datetime.fromisoformat(event.recorded_iso) == whole
    now = iso_utc()
    assert len(now) == len("2026-11-30T22:11:51.000000+00:00") and now.endswith("+00:00")
    # another offset is kept as it was given, microseconds included
    seoul = datetime(2026, 12, 1, 7, 11, 51, tzinfo=timezone(timedelta(hours=9)))
    assert iso_utc(seoul) == "2026-12-01T07:11:51.000000+09:00"
