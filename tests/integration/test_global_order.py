"""A reader following the global log never skips an event, however writers interleave.

Writers append concurrently (several streams, some multi-event batches, retries on conflict)
while a follower polls `read_all(after_position)` the way every projector does. At the end the
follower must have seen every committed event exactly once, in strictly increasing positions.

On PostgreSQL this holds only because appends are serialised by an advisory lock (see
ecommerce/store/postgres_events.py). The tests below also run the store with the lock removed
(`_serialise=False`) and show the follower then loses events: deterministically by holding one
append's transaction open, and statistically under the same concurrent load.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from ecommerce.domain.events import NewEvent, UpcasterRegistry
from ecommerce.store.base import ConcurrencyError, EventStore
from tests.waiting import wait_until

WRITERS = 4
APPENDS_PER_WRITER = 250
STREAMS = 6
BATCH_SIZES = (1, 1, 1, 2, 5, 12)


@dataclass
class Follower:
    """Polls the log like a projector: remembers the last position and asks for what's after."""

    store: EventStore
    seen: list[tuple[int, str]] = field(default_factory=list)
    out_of_order: list[tuple[int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    after: int = 0

    def poll(self) -> int:
        page = self.store.read_all(self.after, limit=200)
        for event in page:
            if event.position <= self.after:
                self.out_of_order.append((self.after, event.position))
            self.seen.append((event.position, event.id))
            self.after = event.position
        return len(page)

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
        while self.poll():  # writers are done: catch up to the end
            pass


def write(store: EventStore, seed: int, committed: list[str], conflicts: list[int]) -> None:
    rng = random.Random(seed)
    for _ in range(APPENDS_PER_WRITER):
        stream = f"account-{rng.randrange(STREAMS)}"
        batch = [NewEvent("Deposited", {"writer": seed, "n": i})
                 for i in range(rng.choice(BATCH_SIZES))]
        while True:  # the usual optimistic loop: read the version, append, retry on conflict
            try:
                result = store.append(stream, batch, store.stream_version(stream))
            except ConcurrencyError:
                conflicts.append(seed)
                continue
            assert result.written
            committed.extend(e.id for e in batch)
            break


def run_concurrently(store: EventStore) -> tuple[Follower, list[str], int]:
    follower = Follower(store)
    committed: list[str] = []
    conflicts: list[int] = []
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)
        return run

    reader = threading.Thread(target=guarded(follower.run))
    writers = [threading.Thread(target=guarded(lambda s=s: write(store, s, committed, conflicts)))
               for s in range(WRITERS)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    follower.stop.set()
    reader.join()
    assert errors == []
    return follower, committed, len(conflicts)


def assert_saw_everything_once_in_order(store: EventStore, follower: Follower,
                                        committed: list[str]) -> None:
    positions = [p for p, _ in follower.seen]
    ids = [i for _, i in follower.seen]
    assert follower.out_of_order == []
    assert all(a < b for a, b in pairwise(positions))
    assert len(ids) == len(set(ids))
    missed = set(committed) - set(ids)
    assert not missed, f"the follower skipped {len(missed)} of {len(committed)} events"
    assert set(ids) == set(committed)
    assert ids == [e.id for e in store.iter_all()]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        from ecommerce.store.sqlite_events import SqliteEventStore

        s: EventStore = SqliteEventStore(tmp_path / "events.db", registry=UpcasterRegistry())
    else:
        from ecommerce.store.postgres_events import PostgresEventStore

        url, schema = request.getfixturevalue("pg_schema")
        s = PostgresEventStore(url, schema=schema, registry=UpcasterRegistry())
    yield s
    s.close()


@pytest.mark.slow
def test_follower_sees_every_event_once_in_order(store: EventStore) -> None:
    follower, committed, conflicts = run_concurrently(store)

    assert len(committed) > WRITERS * APPENDS_PER_WRITER  # multi-event batches happened
    assert conflicts > 0  # writers really raced on the same streams
    assert_saw_everything_once_in_order(store, follower, committed)
    for stream in {f"account-{i}" for i in range(STREAMS)}:
        versions = [e.version for e in store.read_stream(stream)]
        assert versions == list(range(1, len(versions) + 1))


# -- PostgreSQL: what the advisory lock prevents ---------------------------------------------------


def _waiting_on_advisory_lock(url: str, schema: str) -> bool:
    """Is an append to this schema waiting for the advisory lock (PostgreSQL says so)?"""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND wait_event = 'advisory' AND query LIKE %s", (f"%{schema}%append_event%",),
        ).fetchone()
    return bool(row and row[0])


def _call_append_in_open_transaction(url: str, schema: str, function: str) -> tuple[
        object, int]:
    """Start an append through the SQL function in a transaction left open; return both."""
    import uuid

    import psycopg

    conn = psycopg.connect(url)
    row = conn.execute(
        f'SELECT * FROM "{schema}".{function}(%s::text, %s::text, %s::uuid, %s::text, %s::int, '
        "%s::json, %s::json)",
        ("slow-1", "any", uuid.uuid4(), "Slow", 1, "{}", "{}"),
    ).fetchone()
    assert row is not None
    return conn, row[0]


@pytest.mark.postgres
def test_postgres_without_the_lock_a_follower_skips_an_event(pg_schema: tuple[str, str]) -> None:
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    store = PostgresEventStore(url, schema=schema, _serialise=False)
    try:
        slow, slow_position = _call_append_in_open_transaction(
            url, schema, "append_event_v2_unserialised")
        fast = store.append("fast-1", [NewEvent("Fast", {})], "none")
        assert fast.positions[0] > slow_position  # drew its position later, commits first

        follower = Follower(store)
        follower.poll()
        slow.commit()  # type: ignore[attr-defined]
        slow.close()  # type: ignore[attr-defined]
        follower.poll()

        assert [p for p, _ in follower.seen] == [fast.positions[0]]
        assert store.last_position() == fast.positions[0]
        assert len(store.read_all()) == 2  # the slow event is stored, and was skipped
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_with_the_lock_a_later_append_waits_for_the_open_one(
    pg_schema: tuple[str, str],
) -> None:
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    store = PostgresEventStore(url, schema=schema)
    try:
        slow, slow_position = _call_append_in_open_transaction(url, schema, "append_event_v2")
        done = threading.Event()
        fast_positions: list[int] = []

        def fast_append() -> None:
            fast_positions.extend(store.append("fast-1", [NewEvent("Fast", {})], "none").positions)
            done.set()

        writer = threading.Thread(target=fast_append)
        writer.start()
        follower = Follower(store)
        wait_until(lambda: _waiting_on_advisory_lock(url, schema),
                   what="the second append to wait on the advisory lock")
        follower.poll()
        assert not done.is_set()  # blocked on the lock: it has not even drawn a position
        assert follower.seen == []

        slow.commit()  # type: ignore[attr-defined]
        slow.close()  # type: ignore[attr-defined]
        writer.join(timeout=5)
        assert done.is_set()
        follower.poll()
        assert [p for p, _ in follower.seen] == [slow_position, fast_positions[0]]
        assert slow_position < fast_positions[0]
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_without_the_lock_concurrent_load_loses_events(
    pg_schema: tuple[str, str],
) -> None:
    """The load test above is strong enough to catch a missing lock."""
    from ecommerce.store.postgres_events import PostgresEventStore

    url, schema = pg_schema
    store = PostgresEventStore(url, schema=schema, registry=UpcasterRegistry(), _serialise=False)
    try:
        follower, committed, _ = run_concurrently(store)
        missed = set(committed) - {i for _, i in follower.seen}
        assert missed, "expected the unserialised store to let the follower skip events"
        assert len(store.read_all(limit=100_000)) == len(committed)  # stored, just skipped
    finally:
        store.close()
