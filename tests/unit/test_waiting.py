"""The one poll-until-deadline loop (ecommerce.waiting), on a fake clock: no real time passes."""

from __future__ import annotations

import pytest

from ecommerce.waiting import WaitTimeout, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_value_that_holds_without_sleeping_when_it_holds_at_once():
    clock = FakeClock()
    assert wait_until(lambda: {"id": 1}, clock=clock, sleep=clock.sleep) == {"id": 1}
    assert clock.sleeps == []


def test_polls_every_interval_until_the_condition_holds():
    clock = FakeClock()
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), interval=0.5, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_a_timeout_says_what_it_waited_for_and_keeps_the_last_value():
    clock = FakeClock()
    calls = []

    def count() -> int:
        calls.append(clock.now)
        return len(calls) * 0  # never holds

    with pytest.raises(WaitTimeout, match=r"waited 1s for the users; last saw 0") as caught:
        wait_until(count, timeout=1.0, interval=0.3, what="the users", clock=clock, sleep=clock.sleep)
    assert caught.value.last == 0
    assert isinstance(caught.value, TimeoutError)
    # It looks once more exactly at the deadline (the last pause is cut short), never later.
    assert calls[-1] == pytest.approx(1.0) and clock.now == pytest.approx(1.0)


def test_until_tests_the_value_and_the_value_is_returned():
    clock = FakeClock()
    values = iter([1, 2, 3])
    assert wait_until(lambda: next(values), until=lambda v: v >= 3, clock=clock,
                      sleep=clock.sleep) == 3


def test_an_error_in_the_condition_ends_the_wait_at_once():
    clock = FakeClock()

    def broken() -> bool:
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError, match="the process died"):
        wait_until(broken, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_max_interval_backs_off_up_to_the_cap():
    clock = FakeClock()
    answers = iter([False] * 6 + [True])
    wait_until(lambda: next(answers), interval=0.01, max_interval=0.02, clock=clock,
               sleep=clock.sleep)
    assert clock.sleeps == pytest.approx([0.01, 0.015, 0.02, 0.02, 0.02, 0.02])


@pytest.mark.parametrize(("kw", "message"), [({"timeout": -1}, "timeout"),
                                             ({"interval": 0}, "interval")])
def test_nonsense_arguments_are_refused_with_a_sentence(kw, message):
    with pytest.raises(ValueError, match=message):
        wait_until(lambda: True, **kw)
