"""The saga view (projection == fold, after every event) and the timeline rows."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecommerce.domain import saga as s
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import apply_to_dict
from ecommerce.domain.saga_view import describe, timeline_rows
from ecommerce.projections.sagas import SAGA_STATS, SAGAS, project_saga_stats, project_sagas
from tests.unit.test_saga_domain import OTHER, POLICY, Sim


def recorded(sim: Sim) -> list[RecordedEvent]:
    return [RecordedEvent(f"00000000-0000-4000-8000-{i:012d}", "saga-sg1", e.version, 100 + i,
                          e.type, 1, e.data, {}, e.recorded_at)
            for i, e in enumerate(sim.events, start=1)]


outcomes = st.one_of(
    st.just(s.Succeeded({"ok": True})),
    st.builds(s.Refused, st.sampled_from(["declined", "insufficient_stock", "invalid_user"])),
    st.just(s.Transient("HTTP 503")),
)
scripts = st.dictionaries(
    st.sampled_from([*s.STEP_NAMES, "cancel_order", "release_stock", "refund_payment"]),
    st.lists(outcomes, max_size=8), max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(scripts, st.booleans())
def test_projection_equals_the_fold_after_every_event(script: dict[str, Any], crash: bool) -> None:
    sim = Sim(script)
    if crash:  # another orchestrator started the first step and died: a takeover follows
        act = s.next_action(sim.state, sim.now, OTHER, POLICY)
        sim.record(act.record)
    sim.run(max_steps=2000)
    events = recorded(sim)
    model: dict[tuple[str, str], dict[str, Any]] = {}
    for n, e in enumerate(events, start=1):
        for w in project_sagas(e):
            apply_to_dict(model, w)
        expected = describe(s.fold("sg1", events[:n]))
        assert model[(SAGAS, "sg1")] == expected, f"after event {n} ({e.type})"
    final = s.fold("sg1", events)
    assert final.terminal
    for e in events:
        for w in project_saga_stats(e):
            apply_to_dict(model, w)
    stats = model[(SAGA_STATS, "summary")]
    assert stats["started"] == 1 and stats["running"] == 0 and stats[final.status] == 1


def test_view_shows_each_action_and_compensation() -> None:
    sim = Sim({"charge_payment": [s.Refused("declined")]})
    view = describe(sim.run())
    assert view["status"] == "compensated" and view["failure"] == "declined"
    assert view["charge_payment"]["status"] == "failed"
    assert view["confirm_order"]["status"] == "pending"
    assert view["release_stock"]["status"] == "succeeded"
    assert view["refund_payment"]["status"] == "pending"  # nothing was charged
    assert view["actions"][0] == "validate_user"
    assert view["compensations"] == ["refund_payment", "release_stock", "cancel_order"]
    assert view["duration_ms"] > 0


def test_timeline_has_one_row_per_attempt_with_outcomes() -> None:
    sim = Sim({"reserve_stock": [s.Transient("HTTP 503"), s.Transient("HTTP 503")],
               "charge_payment": [s.Refused("declined")]})
    sim.run()
    rows = timeline_rows("sg1", recorded(sim))
    reserve = [r for r in rows if r["step"] == "reserve_stock" and r["kind"] == "action"]
    assert [(r["attempt"], r["outcome"]) for r in reserve] == [
        (1, "retried"), (2, "retried"), (3, "succeeded")]
    assert all(r["start"] <= r["end"] for r in rows)
    comp = [(r["step"], r["outcome"]) for r in rows if r["kind"] == "compensation"]
    assert comp == [("reserve_stock", "succeeded"), ("create_order", "succeeded")]
    charge = [r for r in rows if r["step"] == "charge_payment"]
    assert [r["outcome"] for r in charge] == ["failed"]
    assert list(rows[0]) == ["saga", "step", "kind", "start", "end", "outcome", "attempt"]


def test_timeline_marks_an_attempt_cut_short_by_a_crash() -> None:
    sim = Sim()
    act = s.next_action(sim.state, sim.now, OTHER, POLICY)
    sim.record(act.record)
    sim.run()
    rows = timeline_rows("sg1", recorded(sim))
    first = [r for r in rows if r["step"] == "validate_user"]
    assert [r["outcome"] for r in first] == ["interrupted", "succeeded"]
