"""PostgreSQL wakes the followers: NOTIFY in each append's transaction, LISTEN in the follower.

Against the real server (skipped with the reason when it is absent; failed when
LABKIT_REQUIRE_SERVERS=1). Every wait here has a fallback poll of 60 s and the tests wait at
most 30 s for a follower to notice an append, so they can only pass through a notification.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from ecommerce.domain import saga as s
from ecommerce.domain import users as u
from ecommerce.domain.events import NewEvent
from ecommerce.saga.orchestrator import WAKE_EVENTS, Orchestrator, _wakes_orchestrator, start_saga
from ecommerce.store.postgres_events import PostgresEventStore
from ecommerce.store.postgres_notify import NotifyWaiter, parse_notice, typed_channel
from tests.waiting import wait_until

NEVER = 60.0  # the fallback poll: longer than any wait below
PRICES = {"KB": 100}


@pytest.fixture
def store(pg_schema: tuple[str, str]) -> Iterator[PostgresEventStore]:
    url, schema = pg_schema
    es = PostgresEventStore(url, schema=schema)
    yield es
    es.close()


class Waiting:
    """One `waiter.wait(stop, 0)` in a thread: `done` once it returned."""

    def __init__(self, waiter: NotifyWaiter, found: int = 0, upto: int | None = None) -> None:
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(waiter, found, upto), daemon=True)
        self.thread.start()

    def _run(self, waiter: NotifyWaiter, found: int, upto: int | None) -> None:
        waiter.wait(self.stop, found, upto)
        self.done.set()


def add_user(store: PostgresEventStore, i: int) -> None:
    store.append(u.stream_id(f"w-{i}"), [u.create(u.User(f"w-{i}"), "W", f"w{i}@example.com")],
                 "none")


def test_an_append_wakes_a_listening_follower(store: PostgresEventStore) -> None:
    waiter = store.waiter(fallback=NEVER)
    try:
        assert waiter.listening
        w = Waiting(waiter)
        add_user(store, 1)
        wait_until(w.done.is_set, timeout=30, what="the wait to end on the append's NOTIFY")
        assert waiter.accepted == 1
    finally:
        waiter.close()


def test_the_notification_names_the_stream_and_its_types_and_only_commits_notify(
        store: PostgresEventStore, pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    seen: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(store.channel)))
        # A batch: one notification with its distinct types.
        store.append("saga-n1", [NewEvent(s.SAGA_STARTED, {"x": 1}), NewEvent("StepStarted", {}),
                                 NewEvent("StepStarted", {"y": 2})], "none")
        # A conflicting append writes nothing and notifies nothing.
        with pytest.raises(Exception, match="expected"):
            store.append("saga-n1", [NewEvent("StepStarted", {})], 1)
        # An idempotent retry neither.
        e = NewEvent("UserCreated", {"user_id": "n2", "name": "N", "email": "n@example.com"})
        store.append("user-n2", [e], "none")
        store.append("user-n2", [e], "none")
        seen += [n.payload for n in conn.notifies(timeout=5, stop_after=2)]
        seen += [n.payload for n in conn.notifies(timeout=0.2)]
    stream, types, last = seen[0].split(" ")
    assert stream == "saga-n1" and sorted(types.split(",")) == ["SagaStarted", "StepStarted"]
    saga = store.read_stream("saga-n1")
    user = store.read_stream("user-n2")
    assert int(last) == saga[-1].position  # the append's last position
    assert seen[1:] == [f"user-n2 UserCreated {user[0].position}"]
    assert parse_notice(seen[1]) == ("user-n2", ["UserCreated"], user[0].position)


def test_typed_channels_carry_only_their_types_appends(
        store: PostgresEventStore, pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    long_type = "A" + "b" * 70  # too long for a channel name: hashed, the same way in SQL
    channels = {t: typed_channel(schema, t) for t in (s.SAGA_STARTED, "StepStarted", long_type)}
    assert all(len(c.encode()) <= 63 for c in channels.values())
    assert channels[s.SAGA_STARTED] == f"{schema}.t.SagaStarted"
    got: dict[str, list[str]] = {t: [] for t in channels}
    with psycopg.connect(url, autocommit=True) as conn:
        for c in channels.values():
            conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(c)))
        add_user(store, 20)  # no listener for UserCreated
        store.append("saga-t1", [NewEvent(s.SAGA_STARTED, {}), NewEvent("StepStarted", {})],
                     "none")
        store.append("odd-1", [NewEvent(long_type, {})], "none")
        by_channel = {c: t for t, c in channels.items()}
        for n in conn.notifies(timeout=5, stop_after=3):
            got[by_channel[n.channel]].append(n.payload)
        for n in conn.notifies(timeout=0.2):
            got[by_channel[n.channel]].append(n.payload)
    last = store.read_stream("saga-t1")[-1].position
    both = f"saga-t1 SagaStarted,StepStarted {last}"
    assert got[s.SAGA_STARTED] == [both] and got["StepStarted"] == [both]
    assert got[long_type] == [f"odd-1 {long_type} {last + 1}"]


def test_a_waiter_told_how_far_its_poll_got_sleeps_through_appends_it_saw(
        store: PostgresEventStore) -> None:
    waiter = store.waiter(fallback=NEVER)
    try:
        add_user(store, 30)
        add_user(store, 31)
        head = store.last_position()
        # The poll saw both appends: their pending notifications do not end the wait.
        w = Waiting(waiter, found=2, upto=head)
        wait_until(lambda: waiter.notified == 2, timeout=30, what="the two notifications")
        assert not w.done.is_set()
        add_user(store, 32)  # one the poll did not see
        wait_until(w.done.is_set, timeout=30, what="the wait to end on the new append")
        assert waiter.notified == 3
    finally:
        waiter.close()


def test_the_orchestrators_waiter_ignores_appends_it_does_not_drive(
        store: PostgresEventStore) -> None:
    waiter = store.waiter(_wakes_orchestrator, fallback=NEVER)  # every append, then filtered
    try:
        w = Waiting(waiter)
        add_user(store, 2)  # not a saga start: the wait goes on
        wait_until(lambda: waiter.notified == 1, timeout=30, what="the user's notification")
        assert not w.done.is_set()
        start_saga(store, "u1", [("KB", 1)], prices=PRICES)
        wait_until(w.done.is_set, timeout=30, what="the wait to end on SagaStarted")
        assert (waiter.notified, waiter.accepted) == (2, 1)
    finally:
        waiter.close()


def test_the_orchestrators_typed_waiter_never_receives_other_appends(
        store: PostgresEventStore) -> None:
    waiter = store.waiter(_wakes_orchestrator, types=WAKE_EVENTS, fallback=NEVER)
    try:
        w = Waiting(waiter)
        add_user(store, 4)  # committed first: it would be delivered first, were it listened to
        start_saga(store, "u1", [("KB", 1)], prices=PRICES)
        wait_until(w.done.is_set, timeout=30, what="the wait to end on SagaStarted")
        assert (waiter.notified, waiter.accepted) == (1, 1)
    finally:
        waiter.close()


def test_a_follower_listens_again_after_its_connection_is_killed(
        store: PostgresEventStore, pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    waiter = store.waiter(fallback=NEVER)
    try:
        w = Waiting(waiter)
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                (f'LISTEN "{store.channel}"',)).fetchall()
        assert killed == [(True,)]
        wait_until(w.done.is_set, timeout=30, what="the wait to end when its connection died")
        assert not waiter.listening
        waiter.wait(threading.Event(), 0)  # the follower polled; this wait listens again
        assert waiter.listening
        w = Waiting(waiter)
        add_user(store, 3)
        wait_until(w.done.is_set, timeout=30, what="a notification on the new connection")
    finally:
        waiter.close()


class Instant:
    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome:
        return s.Succeeded()


def test_the_orchestrator_follows_new_sagas_through_notifications(
        store: PostgresEventStore) -> None:
    orch = Orchestrator(store, Instant(), workers=2)
    waiter = store.waiter(_wakes_orchestrator, fallback=NEVER)
    stop = threading.Event()
    t = threading.Thread(target=orch.follow, args=(stop,), kwargs={"waiter": waiter})
    t.start()
    try:
        wait_until(lambda: store.last_position() == 0 and waiter.listening, what="listening")
        ids = [start_saga(store, "u1", [("KB", 1)], prices=PRICES) for _ in range(3)]
        wait_until(lambda: all(orch.read(i).status == "completed" for i in ids), timeout=30,
                   what="the three sagas completed")
        assert waiter.accepted >= 1
    finally:
        stop.set()
        t.join(10)
        orch.close()


def test_the_event_processor_projects_through_notifications(store: PostgresEventStore,
                                                            tmp_path) -> None:
    from ecommerce.projections import get_projections
    from ecommerce.projections.projector import Projector
    from ecommerce.store.sqlite_read import SqliteReadStore

    reads = SqliteReadStore(tmp_path / "r.db")
    projector = Projector(store, reads, get_projections())
    waiter = store.waiter(fallback=NEVER)
    stop = threading.Event()
    t = threading.Thread(target=projector.follow, args=(stop,), kwargs={"waiter": waiter})
    t.start()
    try:
        add_user(store, 10)
        wait_until(lambda: reads.count("users") == 1, timeout=30, what="the first user projected")
        add_user(store, 11)  # the processor is waiting now: only a notification can wake it
        wait_until(lambda: reads.count("users") == 2, timeout=30, what="the second user projected")
        assert waiter.accepted >= 1
    finally:
        stop.set()
        t.join(10)
