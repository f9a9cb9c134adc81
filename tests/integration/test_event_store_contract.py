"""One contract, every event store backend: SQLite (always) and PostgreSQL (when reachable).

Each test runs against both stores and asserts the same observable behaviour, so a service can
switch backends by changing LABKIT_PG_URL and nothing else.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ecommerce.domain.events import (
    MAX_EVENT_BYTES,
    EventValidationError,
    NewEvent,
    UpcasterRegistry,
)
from ecommerce.store.base import (
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    StoreUnavailableError,
)

StoreFactory = Callable[..., EventStore]

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one fresh database of the requested backend (closed afterwards)."""
    opened: list[EventStore] = []

    if request.param == "sqlite":
        from ecommerce.store.sqlite_events import SqliteEventStore

        def open_store(registry: UpcasterRegistry | None = None) -> EventStore:
            return SqliteEventStore(tmp_path / "events.db", registry=registry)
    else:
        from ecommerce.store.postgres_events import PostgresEventStore

        url, schema = request.getfixturevalue("pg_schema")

        def open_store(registry: UpcasterRegistry | None = None) -> EventStore:
            return PostgresEventStore(url, schema=schema, registry=registry)

    def factory(registry: UpcasterRegistry | None = None) -> EventStore:
        store = open_store(UpcasterRegistry() if registry is None else registry)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> EventStore:
    return make_store()


def ev(type_: str = "OrderPlaced", **data: object) -> NewEvent:
    return NewEvent(type_, data or {"n": 1}, {"correlation_id": "c-1"})


def assert_nothing_written(store: EventStore) -> None:
    assert store.last_position() == 0
    assert store.read_all() == []
    assert store.stats()["events"] == 0


# -- append and read ------------------------------------------------------------------------------


def test_append_then_read_stream_returns_what_was_written(store: EventStore) -> None:
    first = NewEvent("OrderPlaced", {"sku": "A-1", "qty": 2, "z": None, "a": [1, "x"]},
                     {"correlation_id": "saga-1"})
    second = NewEvent("OrderConfirmed", {"by": "saga"}, schema_version=1)
    before = datetime.now(UTC)

    result = store.append("order-1", [first, second], "none")

    assert result.written is True
    assert result.stream_id == "order-1"
    assert result.version == 2
    assert len(result.positions) == 2 and result.positions[0] < result.positions[1]
    events = store.read_stream("order-1")
    assert [e.id for e in events] == [first.id, second.id]
    assert [e.version for e in events] == [1, 2]
    assert [e.position for e in events] == list(result.positions)
    assert [e.type for e in events] == ["OrderPlaced", "OrderConfirmed"]
    assert events[0].data == {"sku": "A-1", "qty": 2, "z": None, "a": [1, "x"]}
    assert list(events[0].data) == ["sku", "qty", "z", "a"]  # key order survives the round trip
    assert events[0].metadata == {"correlation_id": "saga-1"}
    assert events[1].metadata == {}
    assert all(e.stream_id == "order-1" and e.schema_version == 1 for e in events)
    recorded = events[0].recorded_at
    assert recorded.utcoffset() is not None and recorded.utcoffset().total_seconds() == 0
    assert before.timestamp() - 1 <= recorded.timestamp() <= datetime.now(UTC).timestamp() + 1


def test_any_text_survives_a_batch_and_every_read(store: EventStore) -> None:
    """Quotes, backslashes, braces, commas, NUL-free control characters and non-ASCII, in data,
    metadata, types and stream ids, one event and a batch (PostgreSQL sends a batch as array
    literals: every element must come back byte for byte)."""
    nasty = 'a "quoted" \\ back\\slash {brace}, comma \t tab \n nl é 漢 🙂 NULL null \'\''
    stream = 'odd "stream" \\ {1,2} é'
    batch = [NewEvent('Type "q" \\ {x},y é', {"s": nasty, nasty: [nasty]}, {"m": nasty}),
             NewEvent("Plain", {"s": "{}"}, {}),
             NewEvent("NULL", {"s": "NULL"}, {"NULL": None})]
    store.append(stream, batch, "none")
    store.append(stream, [NewEvent("One", {"s": nasty}, {"m": nasty})], 3)
    got = store.read_stream(stream)
    assert [(e.type, e.data, e.metadata) for e in got] == [
        (e.type, dict(e.data), dict(e.metadata)) for e in [*batch, NewEvent(
            "One", {"s": nasty}, {"m": nasty})]]
    assert [e.id for e in got[:3]] == [e.id for e in batch]
    assert [e.stream_id for e in store.read_all(0, 100, stream_prefix='odd "stream"',
                                                types=['Type "q" \\ {x},y é', "One"])] \
        == [stream, stream]


def test_an_append_says_when_it_was_recorded_as_reads_will(store: EventStore) -> None:
    """A writer folds its own events with the append's `recorded_at` instead of reading them
    back (order-service shows that time): it must be exactly what reads return, then and after
    a restart; an idempotent retry says nothing (it recorded nothing)."""
    from ecommerce.domain.events import RecordedEvent

    batch = [NewEvent("OrderPlaced", {"n": 1}), NewEvent("OrderConfirmed", {"n": 2})]
    result = store.append("order-7", batch, "none")
    single = store.append("order-8", [NewEvent("OrderPlaced", {"n": 3})], "none")

    assert result.recorded_at is not None and single.recorded_at is not None
    for res in (result, single):
        said = RecordedEvent("x", res.stream_id, 1, 1, "T", 1, "{}", "{}",
                             res.recorded_at).recorded_at
        assert {e.recorded_at for e in store.read_stream(res.stream_id)} == {said}
    assert store.append("order-7", batch, "none").recorded_at is None


def test_a_single_event_is_accepted_without_a_list(store: EventStore) -> None:
    event = ev()
    result = store.append("order-1", event, "none")  # type: ignore[arg-type]
    assert result.version == 1
    assert store.read_stream("order-1")[0].id == event.id


def test_streams_are_independent_and_positions_are_global(store: EventStore) -> None:
    a1 = store.append("order-a", [ev()], "none")
    b1 = store.append("order-b", [ev(), ev()], "none")
    a2 = store.append("order-a", [ev()], 1)

    assert (a1.version, b1.version, a2.version) == (1, 2, 2)
    positions = [*a1.positions, *b1.positions, *a2.positions]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert [e.position for e in store.read_all()] == positions
    assert [e.version for e in store.read_stream("order-a")] == [1, 2]


def test_versions_and_read_from_version(store: EventStore) -> None:
    assert store.stream_version("order-1") == 0
    assert store.read_stream("order-1") == []
    store.append("order-1", [ev(i=1), ev(i=2), ev(i=3)], "none")

    assert store.stream_version("order-1") == 3
    assert store.stream_version("order-2") == 0
    assert [e.data["i"] for e in store.read_stream("order-1", from_version=2)] == [2, 3]
    assert store.read_stream("order-1", from_version=4) == []
    assert store.last_position() == store.read_all()[-1].position


# -- expected versions ----------------------------------------------------------------------------


def test_expected_none_only_for_a_new_stream(store: EventStore) -> None:
    store.append("user-1", [ev()], "none")
    with pytest.raises(ConcurrencyError):
        store.append("user-1", [ev()], "none")
    assert store.stream_version("user-1") == 1


def test_expected_any_appends_whatever_the_version(store: EventStore) -> None:
    assert store.append("user-1", [ev()], "any").version == 1
    assert store.append("user-1", [ev(), ev()], "any").version == 3
    assert store.append("user-1", [ev()], "ANY").version == 4  # case-insensitive
    assert [e.version for e in store.read_stream("user-1")] == [1, 2, 3, 4]


def test_expected_int_must_match_the_current_version(store: EventStore) -> None:
    assert store.append("user-1", [ev()], 0).version == 1  # 0 means "empty stream"
    assert store.append("user-1", [ev()], 1).version == 2
    assert store.append("user-1", [ev()], "2").version == 3  # numeric text, e.g. from HTTP
    for stale in (0, 1, 2, 4, 10**12):
        with pytest.raises(ConcurrencyError):
            store.append("user-1", [ev()], stale)
    assert store.stream_version("user-1") == 3
    assert store.stats()["events"] == 3


def test_conflict_names_the_stream_and_both_versions(store: EventStore) -> None:
    store.append("payment-acc-7", [ev(), ev()], "none")

    with pytest.raises(ConcurrencyError) as caught:
        store.append("payment-acc-7", [ev()], 1)
    err = caught.value
    assert (err.stream_id, err.expected, err.actual) == ("payment-acc-7", 1, 2)
    message = str(err)
    assert "'payment-acc-7'" in message
    assert "expected version 1" in message
    assert "at version 2" in message
    assert "retry" in message.lower()

    with pytest.raises(ConcurrencyError) as caught:
        store.append("payment-acc-7", [ev()], "none")
    assert "expected no stream" in str(caught.value) and caught.value.actual == 2
    assert store.stream_version("payment-acc-7") == 2


# -- idempotency ----------------------------------------------------------------------------------


def test_retrying_a_stored_batch_returns_the_original_positions(store: EventStore) -> None:
    batch = [ev(i=1), ev(i=2)]
    store.append("order-0", [ev()], "none")
    first = store.append("order-1", batch, "none")
    store.append("order-2", [ev()], "none")
    last = store.last_position()

    again = store.append("order-1", batch, "none")  # stale "none": ids decide first
    also = store.append("order-1", list(batch), 2)

    for retry in (again, also):
        assert retry.written is False
        assert retry.positions == first.positions
        assert retry.version == first.version == 2
        assert retry.stream_id == "order-1"
    assert store.last_position() == last
    assert store.stats()["events"] == 4
    assert [e.id for e in store.read_stream("order-1")] == [e.id for e in batch]


def test_a_batch_partly_stored_is_rejected_and_writes_nothing(store: EventStore) -> None:
    stored = ev()
    store.append("order-1", [stored], "none")

    with pytest.raises(DuplicateEventError, match="1 of the 2 event ids"):
        store.append("order-1", [stored, ev()], 1)
    with pytest.raises(DuplicateEventError, match="another stream"):
        store.append("order-2", [stored], "none")
    assert store.stats()["events"] == 1
    assert store.stream_version("order-1") == 1
    assert store.stream_version("order-2") == 0


# -- validation -----------------------------------------------------------------------------------


class NotJson:
    pass


@pytest.mark.parametrize(
    ("stream", "events", "expected", "message"),
    [
        ("order-1", [ev()], "latest", "expected_version"),
        ("order-1", [ev()], -1, "expected_version"),
        ("order-1", [ev()], True, "expected_version"),
        ("", [ev()], "none", "stream id"),
        ("   ", [ev()], "none", "stream id"),
        ("x" * 201, [ev()], "none", "limit"),
        ("order-1", [], "none", "at least one event"),
        ("order-1", [ev(), NewEvent("Bad", {"when": NotJson()})], "none", "JSON"),
        ("order-1", [NewEvent("Bad", {"x": float("nan")})], "none", "JSON"),
        ("order-1", [NewEvent("Big", {"blob": "x" * MAX_EVENT_BYTES})], "none", "bytes"),
        ("order-1", [NewEvent("", {})], "none", "event type"),
        ("order-1", [NewEvent("Ok", {}, id="not-a-uuid")], "none", "UUID"),
        ("order-1", [NewEvent("Ok", {}, schema_version=0)], "none", "schema_version"),
    ],
    ids=["latest", "negative", "bool", "empty-stream", "blank-stream", "long-stream",
         "no-events", "not-json", "nan", "oversized", "no-type", "bad-id", "bad-schema-version"],
)
def test_bad_input_raises_validation_error_and_writes_nothing(
    store: EventStore, stream: str, events: list[NewEvent], expected: object, message: str
) -> None:
    with pytest.raises(EventValidationError, match=message):
        store.append(stream, events, expected)  # type: ignore[arg-type]
    assert_nothing_written(store)


def test_the_same_id_twice_in_one_batch_is_rejected(store: EventStore) -> None:
    event = ev()
    with pytest.raises(EventValidationError, match="same event id twice"):
        store.append("order-1", [event, event], "none")
    assert_nothing_written(store)


def test_an_event_just_under_the_size_limit_is_stored(store: EventStore) -> None:
    overhead = len('{"blob":""}') + len("{}")
    blob = "x" * (MAX_EVENT_BYTES - overhead)
    store.append("order-1", [NewEvent("Big", {"blob": blob})], "none")
    assert store.read_stream("order-1")[0].data["blob"] == blob


def test_read_all_rejects_a_limit_below_one(store: EventStore) -> None:
    with pytest.raises(EventValidationError):
        store.read_all(limit=0)


# -- the global log -------------------------------------------------------------------------------


def _fill(store: EventStore) -> list[str]:
    """20 events in 11 streams (user-, order- and an odd name); returns ids in append order."""
    ids: list[str] = []
    for i in range(5):
        for stream, type_ in ((f"user-{i}", "UserRegistered"), (f"order-{i}", "OrderPlaced"),
                              ("order_%x", "OrderNoted")):
            batch = [NewEvent(type_, {"i": i})] if stream != f"order-{i}" else [
                NewEvent(type_, {"i": i}), NewEvent("OrderConfirmed", {"i": i})]
            store.append(stream, batch, "any")
            ids += [e.id for e in batch]
    return ids


def test_read_all_pages_through_the_log_in_position_order(store: EventStore) -> None:
    ids = _fill(store)
    pages, after = [], 0
    while page := store.read_all(after, limit=7):
        assert len(page) <= 7
        pages.append(page)
        after = page[-1].position
    seen = [e for page in pages for e in page]

    assert [e.id for e in seen] == ids
    positions = [e.position for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(ids)
    assert [len(p) for p in pages] == [7, 7, 6]
    assert store.read_all(after) == []
    assert store.read_all(positions[9], limit=3) == seen[10:13]
    assert [e.id for e in store.iter_all(batch=4)] == ids
    assert [e.id for e in store.iter_all(positions[-3])] == ids[-2:]
    # stream_all: the same events as read_all, yielded one by one
    assert list(store.stream_all(positions[9], limit=3)) == seen[10:13]
    assert list(store.stream_all(0, limit=100)) == seen
    assert list(store.stream_all(after)) == []
    with pytest.raises(EventValidationError):
        store.stream_all(limit=0)


def test_read_all_filters_by_stream_prefix_and_type(store: EventStore) -> None:
    _fill(store)
    everything = store.read_all()

    users = store.read_all(stream_prefix="user-")
    assert [e.id for e in users] == [e.id for e in everything if e.stream_id.startswith("user-")]
    assert len(users) == 5

    # The prefix is literal text: "_" and "%" are not wildcards.
    assert {e.stream_id for e in store.read_all(stream_prefix="order_")} == {"order_%x"}
    assert len(store.read_all(stream_prefix="order-")) == 10
    assert store.read_all(stream_prefix="nobody-") == []

    confirmed = store.read_all(types=["OrderConfirmed"])
    assert [e.type for e in confirmed] == ["OrderConfirmed"] * 5
    two_types = store.read_all(types=["UserRegistered", "OrderNoted"])
    assert [e.id for e in two_types] == [
        e.id for e in everything if e.type in ("UserRegistered", "OrderNoted")]

    both = store.read_all(stream_prefix="order", types=["OrderPlaced", "OrderNoted"], limit=4)
    assert [e.type for e in both] == ["OrderPlaced", "OrderNoted"] * 2
    after = store.read_all(both[-1].position, stream_prefix="order", types=["OrderNoted"])
    assert all(e.position > both[-1].position for e in after) and len(after) == 3


def test_read_all_and_head_says_how_far_the_log_went(store: EventStore) -> None:
    assert store.read_all_and_head(0, 10) == ([], 0)
    store.append("user-1", [NewEvent("UserCreated", {"n": 1})], "none")
    store.append("order-1", [NewEvent("OrderPlaced", {"n": 2}), NewEvent("OrderPaid", {})],
                 "none")
    store.append("user-2", [NewEvent("UserCreated", {"n": 3})], "none")
    head = store.last_position()
    found, seen = store.read_all_and_head(0, 10, stream_prefix="order-")
    assert [e.type for e in found] == ["OrderPlaced", "OrderPaid"] and seen == head
    assert found == store.read_all(0, 10, stream_prefix="order-")
    found, seen = store.read_all_and_head(0, 10, stream_prefix="user-", types=["UserCreated"])
    assert [e.data["n"] for e in found] == [1, 3] and seen == head
    found, seen = store.read_all_and_head(head, 10, types=["UserCreated"])
    assert (found, seen) == ([], head)  # nothing new: still the head
    found, seen = store.read_all_and_head(0, 1)
    assert len(found) == 1 and seen >= found[0].position
    with pytest.raises(EventValidationError):
        store.read_all_and_head(0, 0)


def test_stats_count_events_streams_and_types(store: EventStore) -> None:
    empty = store.stats()
    assert set(empty) == {"backend", "location", "events", "streams", "last_position", "by_type",
                          "log_id"}
    assert (empty["events"], empty["streams"], empty["last_position"], empty["by_type"]) == (
        0, 0, 0, {})
    assert empty["backend"] == store.backend and empty["location"]

    _fill(store)
    stats = store.stats()
    assert stats["events"] == 20
    assert stats["streams"] == 11
    assert stats["last_position"] == store.last_position() == store.read_all(limit=100)[-1].position
    assert stats["by_type"] == {"OrderConfirmed": 5, "OrderNoted": 5, "OrderPlaced": 5,
                                "UserRegistered": 5}
    assert list(stats["by_type"]) == sorted(stats["by_type"])


def test_wipe_empties_the_log_and_positions_keep_increasing(store: EventStore) -> None:
    store.append("order-1", [ev(), ev()], "none")
    old_last = store.last_position()
    old_id = store.log_id()
    store.wipe()
    assert store.log_id() not in ("", old_id), "a wiped log is another log: read models rebuild"

    assert_nothing_written(store)
    assert store.stream_version("order-1") == 0
    result = store.append("order-1", [ev()], "none")
    assert result.version == 1
    assert result.positions[0] > old_last


def test_a_log_keeps_its_identity_across_openings(make_store: StoreFactory,
                                                 tmp_path: Path) -> None:
    first = make_store()
    first.append("order-1", [ev()], "none")
    again = make_store()  # another process opening the same database
    assert first.log_id() == again.log_id() != ""
    assert first.stats()["log_id"] == first.log_id()
    from ecommerce.store.sqlite_events import SqliteEventStore

    other = SqliteEventStore(tmp_path / "another.db")
    assert other.log_id() != first.log_id()
    other.close()


# -- upcasting ------------------------------------------------------------------------------------


def test_old_schema_versions_are_upcast_on_read(make_store: StoreFactory) -> None:
    registry = UpcasterRegistry()
    registry.add("UserRegistered", 1, lambda d: {"name": d["name"], "email": d["mail"]})
    registry.add("UserRegistered", 2, lambda d: {**d, "name": d["name"].title()})
    store = make_store(registry)
    store.append("user-1", [NewEvent("UserRegistered", {"name": "kim min", "mail": "k@x"})],
                 "none")
    store.append("user-1", [NewEvent("UserRegistered", {"name": "Lee", "email": "l@x"},
                                     schema_version=3)], 1)
    store.append("user-1", [NewEvent("UserRenamed", {"name": "kim"})], 2)

    for events in (store.read_stream("user-1"), store.read_all(), list(store.iter_all()),
                   list(store.stream_all())):
        assert [e.schema_version for e in events] == [3, 3, 1]
        assert events[0].data == {"name": "Kim Min", "email": "k@x"}
        assert events[1].data == {"name": "Lee", "email": "l@x"}
        assert events[2].data == {"name": "kim"}

    # The log keeps what was written: a reader without upcasters sees version 1.
    raw = make_store(UpcasterRegistry()).read_stream("user-1")[0]
    assert (raw.schema_version, raw.data) == (1, {"name": "kim min", "mail": "k@x"})


# -- PostgreSQL specifics -------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_unreachable_server_is_one_clear_error() -> None:
    from ecommerce.store.postgres_events import PostgresEventStore

    url = "postgresql://lab:s3cret@127.0.0.1:9/test"  # port 9 (discard): nothing listens
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresEventStore(url)
    message = str(caught.value)
    assert "127.0.0.1:9" in message and "LABKIT_PG_URL" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.postgres
def test_postgres_stores_starting_together_set_up_the_schema_once(
    pg_schema: tuple[str, str],
) -> None:
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    stores: list[PostgresEventStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(PostgresEventStore(url, schema=schema, pool_size=1))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(stores) == 6
        stores[0].append("order-1", [ev()], "none")
        assert all(s.stream_version("order-1") == 1 for s in stores)
    finally:
        for s in stores:
            s.close()


@pytest.mark.postgres
def test_postgres_store_recovers_when_its_connections_are_killed(
    pg_schema: tuple[str, str],
) -> None:
    import psycopg

    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    store = PostgresEventStore(url, schema=schema, pool_size=2)
    try:
        batch = [ev()]
        store.append("order-1", batch, "none")
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND query LIKE %s",
                (f"%{schema}%",),
            ).fetchall()
        assert killed and all(ok for (ok,) in killed)
        retry = store.append("order-1", batch, "none")
        assert retry.written is False
        assert store.append("order-1", [ev()], 1).version == 2
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_times_are_utc_whatever_the_servers_time_zone(
    pg_schema: tuple[str, str],
) -> None:
    """A laptop's PostgreSQL (Homebrew, Postgres.app) takes the system's zone: Asia/Seoul in
    this course. Its rows would say "+09": another day for the user-stats' "created_on:" keys
    than query-service's UTC "today", and stamps beside SQLite's UTC ones. The store's
    connections set their session to UTC; the server's zone is simulated by the URL."""
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    seoul = url + ("&" if "?" in url else "?") + "options=-c%20TimeZone%3DAsia/Seoul"
    store = PostgresEventStore(seoul, schema=schema, pool_size=1)
    try:
        before = datetime.now(UTC)
        store.append("user-1", [ev()], "none")
        [event] = store.read_stream("user-1")
        assert event.recorded_iso.endswith("+00:00"), event.recorded_iso
        assert event.recorded_iso[:10] == event.recorded_at.astimezone(UTC).date().isoformat()
        assert before <= event.recorded_at <= datetime.now(UTC)
        events, _ = store.read_all_and_head(0)
        assert [e.recorded_iso for e in events] == [event.recorded_iso]
    finally:
        store.close()


def test_event_ids_are_uuids_in_canonical_form(store: EventStore) -> None:
    event = NewEvent("OrderPlaced", {}, id=str(uuid.uuid4()).upper())
    store.append("order-1", [event], "none")
    assert store.read_stream("order-1")[0].id == event.id.lower()
    assert store.append("order-1", [event], 1).written is False


@pytest.mark.postgres
def test_postgres_catch_up_reads_scan_the_index_on_a_log_never_analyzed(
    pg_schema: tuple[str, str],
) -> None:
    """A new lab's log grows faster than autovacuum analyzes it: the reads that follow it must
    still scan only what is new (the index), not the whole table, however it has grown."""
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    store = PostgresEventStore(url, schema=schema, pool_size=1)
    try:
        for i in range(60):  # grows 3000 events, read as a follower reads after each append
            store.append(f"saga-{i}", [NewEvent("StepStarted", {"i": i}) for _ in range(50)],
                         "none")
            head = store.last_position()
            store.read_all_and_head(head - 5, 100, stream_prefix="user-")
            store.read_all(head - 5, 100, types=["UserCreated"])

        def plans(cur: Any) -> list[str]:
            analyzed = cur.execute(
                "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables WHERE "
                "schemaname = %s AND relname = 'events'", (schema,)).fetchone()
            assert analyzed == (None, None)  # the case under test: no statistics at all
            out = []
            for name, args in (("labkit_read_all_prefix_head", "'user-', 100"),
                               ("labkit_read_all_types", "'{UserCreated}', 100")):
                rows = cur.execute(f"EXPLAIN EXECUTE {name}({head - 5}, {args})").fetchall()
                out.append("\n".join(r[0] for r in rows))
            return out

        for plan in store._conns.run(plans):  # the connection that prepared them
            assert "Seq Scan" not in plan and "events_pkey" in plan, plan
    finally:
        store.close()
