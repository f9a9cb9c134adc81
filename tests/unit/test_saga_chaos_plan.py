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
