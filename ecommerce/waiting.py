"""The one poll-until-deadline loop: call a condition until it holds or time runs out.

    doc = wait_until(lambda: reads.get("users", uid), timeout=10, what="the user's read model")

Every wait in the system, the helper (`labkit`) and the tests uses it, so a wait always reads
the same way: what it waits for, how long at most, how often it looks. It lives here, in the
system under study, because `ecommerce` may not import `labkit` and both need it.

The timeout is a safety net for a broken system, never a statement about speed: a wait that
times out raises `WaitTimeout`, which says what it waited for and what it last saw, and keeps
that last value (`.last`) for a caller that would rather report it than fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold within `timeout` seconds; `last` is its last value."""

    def __init__(self, what: str, timeout: float, last: Any) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"waited {timeout:g}s for {what}; last saw {_short(last)}")


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def wait_until(condition: Callable[[], T], *, until: Callable[[T], object] = bool,
               timeout: float = 60.0, interval: float = 0.01, max_interval: float | None = None,
               what: str = "the condition",
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `condition()` until `until(value)` holds (by default: the value is truthy) and
    return that value.

    `condition` is called at least once, and once more at the deadline, so a condition that
    holds in time is never reported late. Between calls it sleeps `interval` seconds; with
    `max_interval`, the pause grows by half each time up to that (cheap first looks, then
    gentle polling). An exception from `condition` propagates at once: it says more than a
    timeout would. After `timeout` seconds it raises `WaitTimeout` with the last value.
    `clock` and `sleep` are for tests that fake time.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    deadline = clock() + timeout
    pause = interval
    while True:
        value = condition()
        if until(value):
            return value
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(what, timeout, value)
        sleep(min(pause, left))
        if max_interval is not None:
            pause = min(pause * 1.5, max_interval)
