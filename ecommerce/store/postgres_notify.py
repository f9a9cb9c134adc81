"""PostgreSQL wake-ups for followers: `NOTIFY` at each append's commit, `LISTEN` to wait.

Every append function (`append_event_v2`, `append_events_v2` in `postgres_events`) ends with
`pg_notify('<schema>.events', '<stream id> <type>[,<type>...] <position>')`, `<position>`
being the append's last position, and sends the same payload once more on each of its event
types' own channel (`typed_channel`: `<schema>.t.<type>`). PostgreSQL delivers a notification
only when its transaction commits, in commit order, to every connection that `LISTEN`s on the
channel; so a notification means "an append is visible now, up to that position".

`NotifyWaiter` listens on a connection of its own: on the log's channel, or only on the
channels of the event types its follower reacts to (the orchestrator: `SagaStarted`,
`SagaResumed`), so the other appends never even reach the follower's process. A follower
polls, then waits: the wait ends at the first notification its `interest` accepts, or after
`fallback` seconds (a safety net: a lost connection, a writer that does not notify), or when
`stop` is set. Because the follower `LISTEN`s before its first poll, an append that commits
after a poll always produces a notification the next wait sees: nothing is missed.

A follower that tells the wait how far its poll got (`upto`: every event at or below that
position was seen) is not woken by appends the poll already saw: under load many of the
pending notifications are for events the last poll already read, and polling again for them
would find nothing. (Positions are committed in order, see `postgres_events`: an append the
poll did not see always has a higher position.) Without `upto`, a wait after a poll that
found events drains the pending notifications and returns at once, as under load.
"""

from __future__ import annotations

import contextlib
import hashlib
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


#: Longest channel name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
MAX_CHANNEL = 63
#: Characters of the type's MD5 in a typed channel whose plain name would be too long.
_HASHED = 12


def notify_channel(schema: str) -> str:
    """The channel every append to `schema`'s log notifies."""
    return f"{schema}.events"


def typed_channel(schema: str, event_type: str) -> str:
    """The channel appends of `event_type` also notify: `<schema>.t.<type>`, or, when that is
    longer than PostgreSQL keeps, `<schema>.t.#<first 12 hex digits of the type's MD5>`.
    (`typed_channel_sql` computes the same name in SQL.)"""
    name = f"{schema}.t.{event_type}"
    if len(name.encode()) <= MAX_CHANNEL:
        return name
    return f"{schema}.t.#{hashlib.md5(event_type.encode()).hexdigest()[:_HASHED]}"


def typed_channel_sql(schema: str, expr: str) -> sql.Composable:
    """`typed_channel(schema, <the SQL expression expr>)` as SQL (`expr` is trusted code)."""
    prefix = sql.Literal(f"{schema}.t.")
    x = sql.SQL(expr)
    return sql.SQL(
        "(CASE WHEN octet_length({p} || {x}) <= {max} THEN {p} || {x} "
        "ELSE {p} || '#' || left(md5({x}), {n}) END)"
    ).format(p=prefix, x=x, max=sql.Literal(MAX_CHANNEL), n=sql.Literal(_HASHED))


def parse_notice(payload: str) -> tuple[str, list[str], int | None]:
    """`'saga-1 SagaStarted 42'` -> `('saga-1', ['SagaStarted'], 42)`: the stream, the
    append's event types and its last position (None if the payload has none)."""
    rest, _, last = payload.rpartition(" ")
    position: int | None = int(last) if last.isdigit() else None
    if position is None:
        rest = payload
    stream, _, types = rest.rpartition(" ")
    if not stream:
        stream, types = types, ""
    return stream, [t for t in types.split(",") if t], position


class NotifyWaiter:
    """Wait for appends to one log (see the module docstring)."""

    def __init__(self, url: str, channels: str | Sequence[str], interest: Interest | None = None,
                 *, fallback: float = FALLBACK_POLL, gather: float = 0.0,
                 connect_timeout: int = 5) -> None:
        """`channels`: the log's channel, or the typed channels of the follower's event types.
        `gather`: while events keep coming (the last poll found some), wait this many seconds
        more once woken, so the next poll takes several appends at once."""
        self.url, self.interest, self.gather = url, interest, gather
        self.channels = [channels] if isinstance(channels, str) else list(channels)
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
            for channel in self.channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error:
            return False
        self._conn = conn
        return True

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def _news(self, payload: str, upto: int | None) -> bool:
        """Is this notification something the follower's last poll (up to `upto`) missed?"""
        self.notified += 1
        stream, types, position = parse_notice(payload)
        if self.interest is not None and not self.interest(stream, types):
            return False
        self.accepted += 1
        return upto is None or position is None or position > upto

    def wait(self, stop: threading.Event, found: int, upto: int | None = None) -> None:
        """Return when it is time to poll again. `found`: events the last poll found; `upto`:
        the position that poll saw up to, if the follower knows it (see the module docstring)."""
        if not self.listening:
            # Polling found the log readable, so the server is back: listen again, then poll at
            # once (appends made while we were not listening are found by that poll).
            if not self.listen():
                stop.wait(RECONNECT_WAIT)
            return
        assert self._conn is not None
        try:
            if found:
                news = False
                for n in self._conn.notifies(timeout=0):  # already visible to the next poll
                    news = self._news(n.payload, upto) or news
                if news or upto is None:
                    self._gather(stop)
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
                        if self._news(n.payload, upto):
                            woken = True
                            break
                finally:
                    gen.close()  # it holds the connection's lock until closed
                if woken:
                    if found:
                        self._gather(stop)
                    for rest in self._conn.notifies(timeout=0):  # these are visible too
                        self._news(rest.payload, upto)
                    return
        except psycopg.Error:
            self.close()  # the next wait reconnects; poll now

    def _gather(self, stop: threading.Event) -> None:
        if self.gather > 0:
            stop.wait(self.gather)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
