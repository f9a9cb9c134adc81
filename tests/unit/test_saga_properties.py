"""Properties of the saga decider (ecommerce.domain.saga), over every mix of participant answers.

Hypothesis drives the pure decider the way the orchestrator does (record what it decides, call,
record the outcome) with participants that answer anything in any order: success, a business
refusal, or no answer (timeout, 503) that takes a while, and orchestrators that die mid-call and
are replaced by another one. The only assumption is the usual one for liveness: participants
answer in the end (after the drawn answers run out, every call succeeds).

For every such history:
- the saga reaches a terminal state (completed, compensated or failed) in a bounded number of
  decisions;
- the compensations it ran are exactly the compensable steps that succeeded or may have happened
  (their last call got no answer), in the reverse order of the steps; with a refused
  compensation (failed) they are a prefix of that;
- a completed saga ran every step and compensated nothing.

The examples are the same on every run (the `labkit` hypothesis profile in tests/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecommerce.domain import saga as s

POLICY = s.RetryPolicy()
LINES = [{"sku": "KB", "quantity": 2, "price": 1500}]
MAX_DECISIONS = 2_000


@dataclass(frozen=True)
class Answer:
    """One drawn participant answer, how long the call took, and whether the caller dies."""

    kind: str  # "ok" | "refused" | "no answer"
    took: float
    caller_dies: bool


answers = st.builds(
    Answer,
    kind=st.sampled_from(["ok", "ok", "refused", "no answer", "no answer"]),
    took=st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    caller_dies=st.sampled_from([False, False, False, False, True]),
)


class Ev:
    def __init__(self, type: str, data: dict[str, Any], version: int) -> None:
        self.type, self.data, self.version = type, data, version
        self.recorded_iso = "2026-01-01T00:00:00+00:00"


@dataclass
class Run:
    script: list[Answer]
    now: float = 1_000_000.0
    owner: int = 0
    events: list[Ev] = field(default_factory=list)
    state: s.SagaState = field(default_factory=lambda: s.SagaState("sg"))
    #: The last answer each forward step got: what the world may hold.
    last_answer: dict[str, str] = field(default_factory=dict)

    def record(self, evs: Any) -> None:
        for e in evs:
            ev = Ev(e.type, e.data, len(self.events) + 1)
            self.events.append(ev)
            self.state = s.apply(self.state, ev.type, ev.data, ev.version, ev.recorded_iso)

    def answer(self) -> Answer:
        return self.script.pop(0) if self.script else Answer("ok", 0.01, False)

    def drive(self) -> int:
        """Run the decider until it says Done; return how many decisions it took."""
        self.record([s.saga_started("sg", "ord", "u1", LINES)])
        for n in range(MAX_DECISIONS):
            me = f"orchestrator-{self.owner}"
            act = s.next_action(self.state, self.now, me, POLICY)
            if isinstance(act, s.Done):
                return n
            if isinstance(act, s.Wait):  # another (dead) orchestrator's lease: wait it out
                self.now = act.until + 0.001
                continue
            if isinstance(act, s.Finish):
                self.record(act.record)
                continue
            assert isinstance(act, s.Invoke), act
            self.record(act.record)
            got = self.answer()
            self.now += got.took
            if got.caller_dies:  # it died during the call: the answer is lost, a new one takes
                self.owner += 1  # over after the lease (and calls again, with the same key)
                continue
            outcome: s.Outcome = (s.Succeeded({}) if got.kind == "ok" else
                                  s.Refused("declined") if got.kind == "refused" else
                                  s.Transient("timeout"))
            if act.kind == "action":
                self.last_answer[act.step.name] = got.kind
            events = s.on_outcome(self.state, act, outcome, self.now, me, POLICY)
            self.record(events)
            self.now += s.retry_delay(events)
        raise AssertionError(f"no terminal state after {MAX_DECISIONS} decisions: "
                             f"{self.state.status}, {len(self.events)} events")


def compensated(events: list[Ev]) -> list[str]:
    return [e.data["compensation"] for e in events if e.type == s.COMPENSATION_SUCCEEDED]


@settings(max_examples=200)
@given(st.lists(answers, max_size=40))
def test_the_saga_always_ends_and_compensates_in_reverse_what_may_have_happened(script):
    run = Run(list(script))
    run.drive()
    state = run.state
    assert state.terminal, state.status
    # What the world may hold: steps whose last call succeeded or got no answer. A refusal is
    # an answer that says it did not happen (the same idempotency key gets the same answer).
    may_have_happened = [step for step in s.ORDER_SAGA if step.compensation
                         and run.last_answer.get(step.name) in ("ok", "no answer")]
    expected = [str(step.compensation) for step in reversed(may_have_happened)]
    done = compensated(run.events)
    if state.status == "completed":
        assert all(p.status == "succeeded" for p in state.actions)
        assert done == []
    elif state.status == "compensated":
        assert done == expected
        finished = run.events[-1]
        assert finished.type == s.SAGA_COMPENSATED and finished.data["compensated"] == expected
    else:  # failed: a compensation was refused; the ones before it ran, in order
        assert state.status == "failed"
        assert done == expected[:len(done)] and len(done) < len(expected)
    # A step after the one that failed never ran, so it is never compensated.
    step_failed = [e.data["step"] for e in run.events if e.type == s.STEP_FAILED]
    assert len(step_failed) <= 1
    if step_failed:
        failed_at = s.STEP_NAMES.index(step_failed[0])
        later = {str(step.compensation) for step in s.ORDER_SAGA[failed_at + 1:]}
        assert later.isdisjoint(done)


@settings(max_examples=60)
@given(st.lists(answers.filter(lambda a: a.kind != "refused"), max_size=40))
def test_without_refusals_the_pivot_is_never_given_up_on(script):
    """No business refusal: the saga completes unless a forward step before the pivot ran out
    of time; the pivot itself is retried until it answers."""
    run = Run(list(script))
    run.drive()
    pivot = s.STEP_NAMES.index(next(step.name for step in s.ORDER_SAGA if step.pivot))
    assert run.state.status in ("completed", "compensated")
    if run.state.status == "compensated":
        failed_at = s.STEP_NAMES.index(run.state.failed_step)
        assert failed_at < pivot
        assert run.state.actions[failed_at].failure_kind == "deadline"
