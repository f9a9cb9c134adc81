"""PostgreSQL wake-ups for followers: `NOTIFY` at each append's commit, `LISTEN` to wait.

Every append function (`append_event`, `append_events` in `postgres_events`) ends with
`pg_notify('<schema>.events', '<stream id> <type>[,<type>...]')`. PostgreSQL delivers a
notification only when its transaction commits, in commit order, to every connection that
`LISTEN`s on the channel; so a notification means "an append is visible now".

`NotifyWaiter` listens on a connection of its own. A follower polls, then waits: the wait ends
at the first notification its `interest` accepts (the orchestrator only cares about
`SagaStarted`/`SagaResumed` in saga streams), or after `fallback` seconds (a safety net: a lost
connection, a writer that does not notify), or when `stop` is set. Because the follower
`LISTEN`s before its first poll, an append that commits after a poll always produces a
notification the next wait sees: nothing is missed.

After a poll that found events, pending notifications are drained without waiting (their
appends are visible to the next poll anyway) and the next poll is immediate, as under load.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

#: Seconds between two polls when no notification arrives at all.
FALLBACK_POLL = 5.0
#: Longest single wait on the socket: how quickly `stop` is noticed.
STOP_SLICE = 0.5
#: Wait after a failed reconnect before polling (and trying again).
RECONNECT_WAIT = 1.0

#: (stream id, event types of the append) -> wake the follower?
Interest = Callable[[str, Sequence[str]], bool]


def notify_channel(schema: str) -> str:
    """The channel every append to `schema`'s log notifies."""
    return f"{schema}.events"


def parse_notice(payload: str) -> tuple[str, list[str]]:
    """`'saga-1 SagaStarted'` -> `('saga-1', ['SagaStarted'])`."""
    stream, _, types = payload.partition(" ")
    return stream, [t for t in types.split(",") if t]


class NotifyWaiter:
    """Wait for appends to one log (see the module docstring)."""

    def __init__(self, url: str, channel: str, interest: Interest | None = None, *,
                 fallback: float = FALLBACK_POLL, connect_timeout: int = 5) -> None:
        self.url, self.channel, self.interest = url, channel, interest
        # connect_timeout: whole seconds, as libpq reads it (a fraction would be refused).
        self.fallback, self.connect_timeout = fallback, connect_timeout
        self._conn: psycopg.Connection | None = None
        #: Notifications seen / accepted by `interest` (for tests and logs).
        self.notified = self.accepted = 0
        self.listen()

    def listen(self) -> bool:
        """(Re)connect and LISTEN; False when the server cannot be reached (polls go on)."""
        self.close()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error:
            return False
        self._conn = conn
        return True

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def _wanted(self, payload: str) -> bool:
        self.notified += 1
        if self.interest is not None and not self.interest(*parse_notice(payload)):
            return False
        self.accepted += 1
        return True

    def wait(self, stop: threading.Event, found: int) -> None:
        if not self.listening:
            # Polling found the log readable, so the server is back: listen again, then poll at
            # once (appends made while we were not listening are found by that poll).
            if not self.listen():
                stop.wait(RECONNECT_WAIT)
            return
        assert self._conn is not None
        try:
            if found:
                for n in self._conn.notifies(timeout=0):  # already visible to the next poll
                    self._wanted(n.payload)
                return
            deadline = time.monotonic() + self.fallback
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # the fallback poll
                woken = False
                gen = self._conn.notifies(timeout=min(left, STOP_SLICE))
                try:
                    for n in gen:
                        if self._wanted(n.payload):
                            woken = True
                            break
                finally:
                    gen.close()  # it holds the connection's lock until closed
                if woken:
                    for rest in self._conn.notifies(timeout=0):  # these are visible too
                        self._wanted(rest.payload)
                    return
        except psycopg.Error:
            self.close()  # the next wait reconnects; poll now

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
