"""How a follower waits for new events: a wake-up from the database, else an adaptive backoff.

A follower (the saga orchestrator's `run --follow`, the event processor's `--follow`) polls the
log, acts on what it found, and waits. How it waits decides what it costs at rest and how late
it notices a new event:

- PostgreSQL: every append sends `NOTIFY` in its own transaction (delivered at commit), and the
  follower `LISTEN`s on a connection of its own (`PostgresEventStore.waiter`). At rest it sleeps
  in the kernel until an append commits; a fallback poll every few seconds covers a lost
  connection or a writer that does not notify.
- Otherwise (SQLite): `Backoff`. While events keep coming the next poll is immediate; once the
  log is quiet the wait grows with the quiet time (a quarter of it), up to 250 ms. So a new
  event after a long rest is noticed within 250 ms, and one in a busy period at once.

`Waiter.wait(stop, found)` is called after each poll with the number of events it found, and
returns when it is time to poll again (or `stop` is set).
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
    def wait(self, stop: threading.Event, found: int) -> None:
        """Return when it is time to poll again; `found`: events the last poll found."""

    def close(self) -> None: ...


class Backoff:
    """Immediate under load, growing to `maximum` at rest (see the module docstring)."""

    def __init__(self, minimum: float = MIN_IDLE_WAIT, maximum: float = MAX_IDLE_WAIT,
                 fraction: float = IDLE_FRACTION,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("need 0 < minimum <= maximum")
        self.minimum, self.maximum, self.fraction = minimum, maximum, fraction
        self.clock = clock
        self._last_seen = clock()

    def delay(self, found: int) -> float:
        """Seconds to wait after a poll that found `found` events (0: poll again at once)."""
        now = self.clock()
        if found:
            self._last_seen = now
            return 0.0
        return min(self.maximum, max(self.minimum, (now - self._last_seen) * self.fraction))


class PollWaiter:
    """Waits with a `Backoff`: for stores that cannot wake a follower up."""

    def __init__(self, backoff: Backoff | None = None, *, maximum: float | None = None) -> None:
        if backoff is None:
            top = MAX_IDLE_WAIT if maximum is None else maximum
            if top <= 0:
                raise ValueError(f"the longest idle wait must be more than 0 s; got {top}")
            backoff = Backoff(minimum=min(MIN_IDLE_WAIT, top), maximum=top)
        self.backoff = backoff

    def wait(self, stop: threading.Event, found: int) -> None:
        delay = self.backoff.delay(found)
        if delay:
            stop.wait(delay)

    def close(self) -> None:
        pass
