"""The one way tests wait: poll a condition until it holds (never a fixed sleep).

    value = wait_until(lambda: reads.count("users") == 3, what="the projector caught up")

This is the system's own helper (`ecommerce.waiting`), the one every wait in ecommerce and
labkit uses too. The timeout (60 s by default) is a safety net for a broken system: the test
then fails saying what it waited for and what it last saw. It is never an assertion about speed.
"""

from ecommerce.waiting import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "wait_until"]
