"""Quiet, supervised followers: the idle backoff, and probes that report a hung follow loop.

The PostgreSQL wake-ups (NOTIFY/LISTEN) are tested at the wire in
tests/integration/test_follower_wakeups.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from ecommerce.domain import users as u
from ecommerce.health import HealthServer, Heartbeat
from ecommerce.projections import get_projections
from ecommerce.projections.projector import Projector
from ecommerce.store.sqlite_events import SqliteEventStore
from ecommerce.store.sqlite_read import SqliteReadStore
from ecommerce.store.wakeup import Backoff, PollWaiter
from tests.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_is_immediate_under_load_and_grows_to_the_cap_at_rest() -> None:
    clock = Clock()
    b = Backoff(minimum=0.001, maximum=0.25, fraction=0.25, clock=clock)
    assert b.delay(3) == 0.0  # found events: poll again at once
    assert b.delay(0) == 0.001  # quiet for no time yet: the shortest wait
    clock.now += 0.2
    assert b.delay(0) == pytest.approx(0.05)  # a quarter of the quiet time
    clock.now += 10
    assert b.delay(0) == 0.25  # long quiet: capped
    assert b.delay(1) == 0.0  # an event again: immediate, and the quiet time starts over
    clock.now += 0.004
    assert b.delay(0) == pytest.approx(0.001)


def test_under_load_a_follower_keeps_its_old_interval_and_backs_off_from_there() -> None:
    clock = Clock()
    b = Backoff(minimum=0.001, maximum=0.25, busy=0.02, clock=clock)
    assert b.delay(4) == 0.02  # events keep coming: the processor's old fixed 20 ms
    clock.now += 0.01
    assert b.delay(0) == 0.02  # quiet for a moment: never shorter than under load
    clock.now += 0.5
    assert b.delay(0) == pytest.approx(0.1275)
    clock.now += 5
    assert b.delay(0) == 0.25
    assert Backoff(maximum=0.01, busy=0.02).busy == 0.01  # capped by the longest wait


def test_poll_waiter_waits_only_when_the_poll_found_nothing() -> None:
    clock = Clock()
    waits: list[float] = []

    class Recorder(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            return False

    w = PollWaiter(Backoff(clock=clock))
    stop = Recorder()
    w.wait(stop, 5)
    clock.now += 40
    w.wait(stop, 0)
    assert waits == [0.25]


def add_user(es: SqliteEventStore, i: int) -> None:
    es.append(u.stream_id(f"f-{i}"), [u.create(u.User(f"f-{i}"), f"U {i}", f"u{i}@example.com")],
              "none")


class Hanging(SqliteEventStore):
    """An event store whose reads block while `hang` is set: a follow loop stuck in a call."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hang = threading.Event()
        self.release = threading.Event()
        self.stuck = threading.Event()

    def _wait_while_hanging(self) -> None:
        if self.hang.is_set():
            self.stuck.set()
            self.release.wait(60)

    def _read_all(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._wait_while_hanging()
        return super()._read_all(*args, **kwargs)

    def _stream_all(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._wait_while_hanging()
        return super()._stream_all(*args, **kwargs)


def test_a_follower_whose_loop_hangs_is_reported_unhealthy_then_healthy_again(tmp_path: Path
                                                                                ) -> None:
    es, rs = Hanging(tmp_path / "e.db"), SqliteReadStore(tmp_path / "r.db")
    projector = Projector(es, rs, get_projections())
    beat = Heartbeat("event-processor", stale_after=0.5)
    server = HealthServer(beat, "127.0.0.1", 0)
    stop = threading.Event()
    t = threading.Thread(target=projector.follow, args=(stop, 0.01), kwargs={"heartbeat": beat})
    t.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
            assert client.get("/healthz").json()["status"] == "ok"
            add_user(es, 1)
            wait_until(lambda: rs.count("users") == 1, what="the user projected")

            es.hang.set()  # the loop's next read never returns
            wait_until(es.stuck.is_set, what="the loop stuck in a read")
            hung = wait_until(lambda: (r := client.get("/healthz")).status_code == 503 and r,
                              what="/healthz reporting the hung loop")
            assert hung.json()["status"] == "hung"
            assert "has not turned" in hung.json()["detail"]
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "has not turned" in ready.json()["checks"]["follow loop"]

            es.hang.clear()
            es.release.set()  # it turns again: healthy, and it carries on projecting
            add_user(es, 2)
            wait_until(lambda: client.get("/healthz").status_code == 200, what="healthy again")
            wait_until(lambda: rs.count("users") == 2, what="the next user projected")
            assert client.get("/nope").status_code == 404
    finally:
        es.release.set()
        stop.set()
        t.join(10)
        server.close()


def test_a_follower_that_cannot_read_the_store_is_alive_but_not_ready(tmp_path: Path) -> None:
    es, rs = SqliteEventStore(tmp_path / "e.db"), SqliteReadStore(tmp_path / "r.db")
    projector = Projector(es, rs, get_projections())
    beat = Heartbeat("event-processor", stale_after=30)
    errors: list[Exception] = []
    stop = threading.Event()

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk I/O error")

    es._read_all = es._stream_all = broken  # type: ignore[method-assign]
    t = threading.Thread(target=projector.follow, args=(stop, 0.01),
                         kwargs={"heartbeat": beat, "on_error": errors.append})
    t.start()
    try:
        wait_until(lambda: errors, what="the loop to meet the error")
        code, body = beat.readiness()
        assert code == 503 and "disk I/O error" in body["checks"]["event store"]
        assert body["checks"]["follow loop"] == "ok"
        assert beat.health()[0] == 200  # alive: a restart would not help, so liveness holds
    finally:
        stop.set()
        t.join(10)
