"""The one way tests wait: poll a condition until it holds (never a fixed sleep).

    value = wait_until(lambda: reads.count("users") == 3, what="the projector caught up")

The timeout is a safety net for a broken system (the test then fails saying what it waited
for and what it last saw), never an assertion about speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.01,
               what: str = "the condition") -> T:
    """Call `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}; last saw {last!r}")
        time.sleep(interval)
