"""How a follower waits for new events: a wake-up from the database, else an adaptive backoff.

A follower (the saga orchestrator's `run --follow`, the event processor's `--follow`) polls the
log, acts on what it found, and waits. How it waits decides what it costs at rest and how late
it notices a new event:

- PostgreSQL: every append sends `NOTIFY` in its own transaction (delivered at commit), and the
  follower `LISTEN`s on a connection of its own (`PostgresEventStore.waiter`). At rest it sleeps
  in the kernel until an append commits; a fallback poll every few seconds covers a lost
  connection or a writer that does not notify.
- Otherwise (SQLite): `Backoff`. While events keep coming the follower polls every `busy`
  seconds (each follower keeps the fixed interval it always polled at: 5 ms for the
  orchestrator, 20 ms for the processor, so under load it costs and lags exactly as before);
  once the log is quiet the wait grows with the quiet time (a quarter of it), up to 250 ms.
  So a new event after a long rest is noticed within 250 ms, and one in a busy period as fast
  as ever.

`Waiter.wait(stop, found, upto)` is called after each poll with the number of events it found
(and, if the follower knows it, the position the poll saw up to), and returns when it is time to
poll again (or `stop` is set).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

#: Longest idle wait between two polls without wake-ups from the database.
MAX_IDLE_WAIT = 0.25
#: Shortest idle wait (right after the last event).
MIN_IDLE_WAIT = 0.001
#: The idle wait is this fraction of the time since the last event was seen.
IDLE_FRACTION = 0.25


class Waiter(Protocol):
    def wait(self, stop: threading.Event, found: int, upto: int | None = None) -> None:
        """Return when it is time to poll again; `found`: events the last poll found; `upto`:
        the log position the poll saw up to, when the follower knows it (a waiter woken by
        the database need not wake for appends at or below it)."""

    def close(self) -> None: ...


class Backoff:
    """Immediate under load, growing to `maximum` at rest (see the module docstring)."""

    def __init__(self, minimum: float = MIN_IDLE_WAIT, maximum: float = MAX_IDLE_WAIT,
                 fraction: float = IDLE_FRACTION, busy: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("need 0 < minimum <= maximum")
        if busy < 0:
            raise ValueError("busy must be >= 0")
        self.minimum, self.maximum, self.fraction = minimum, maximum, fraction
        #: The wait after a poll that found events (0: poll again at once).
        self.busy = min(busy, maximum)
        self.clock = clock
        self._last_seen = clock()

    def delay(self, found: int) -> float:
        """Seconds to wait after a poll that found `found` events (0: poll again at once)."""
        now = self.clock()
        if found:
            self._last_seen = now
            return self.busy
        quiet = (now - self._last_seen) * self.fraction
        return min(self.maximum, max(self.minimum, self.busy, quiet))


class PollWaiter:
    """Waits with a `Backoff`: for stores that cannot wake a follower up."""

    def __init__(self, backoff: Backoff | None = None, *, maximum: float | None = None,
                 busy: float = 0.0) -> None:
        if backoff is None:
            top = MAX_IDLE_WAIT if maximum is None else maximum
            if top <= 0:
                raise ValueError(f"the longest idle wait must be more than 0 s; got {top}")
            backoff = Backoff(minimum=min(MIN_IDLE_WAIT, top), maximum=top, busy=busy)
        self.backoff = backoff

    def wait(self, stop: threading.Event, found: int, upto: int | None = None) -> None:
        delay = self.backoff.delay(found)
        if delay:
            stop.wait(delay)

    def close(self) -> None:
        pass
