"""The chaos plan is a pure function of the seed."""

from __future__ import annotations

from collections import Counter

from ecommerce.domain import saga as s
from labkit.bench.chaos import plan_runs


def test_same_seed_same_plan_and_another_seed_another() -> None:
    assert plan_runs(200, 5) == plan_runs(200, 5)
    assert plan_runs(200, 5) != plan_runs(200, 6)


def test_plan_mixes_every_kind_of_fault() -> None:
    plans = plan_runs(1000, 0)
    modes = Counter(f.mode for p in plans for f in p.faults)
    assert {"error", "delay", "decline"} <= set(modes)
    assert "crash" in modes
    assert sum(1 for p in plans if p.crash_after) > 50
    assert sum(1 for p in plans if p.user.startswith("chaos-ghost")) > 10
    assert any(q == 999 for p in plans for _, q in p.lines)
    for p in plans:
        if p.crash_after:
            etype = p.crash_after.rpartition(":")[2]
            assert etype in s.SAGA_EVENTS
    without = plan_runs(1000, 0, participant_crashes=False)
    assert not any(f.mode == "crash" for p in without for f in p.faults)


def test_attacks_are_drawn_apart_and_leave_the_fault_plans_alone() -> None:
    from labkit.bench.chaos import ATTACKS

    with_attacks = plan_runs(500, 3)
    without = plan_runs(500, 3, attacks=0.0)
    assert [(p.user, p.lines, p.faults, p.crash_after) for p in with_attacks] == \
        [(p.user, p.lines, p.faults, p.crash_after) for p in without]
    drawn = [a for p in with_attacks for a in p.attacks]
    assert set(drawn) == set(ATTACKS) and not any(p.attacks for p in without)
