"""Challenge mode against a real local lab (every service a process, temp data dir), on SQLite
and on PostgreSQL + Redis.

For each challenge: start -> check fails -> the known fix (a real action with the lab's
tools) -> check passes; then give-up on a fresh start leaves the invariants holding and the
read side matching the log. The CLI and the notebook API share the active challenge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.cli import main
from labkit.lab import Lab
from labkit.lab.challenges import CHALLENGES
from labkit.lab.challenges.poison_event import PoisonEvent
from labkit.lab.challenges.readmodel import compare_users
from labkit.ops import invariants
from tests.conftest import require_postgres, require_redis
from tests.integration.labs import lab_settings, running
from tests.waiting import wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def lab(request, tmp_path_factory) -> Iterator[Lab]:
    data_dir = tmp_path_factory.mktemp("challenges")
    if request.param == "sqlite":
        settings = lab_settings(data_dir)
    else:
        settings = lab_settings(data_dir, pg_url=require_postgres(), redis_url=require_redis())
    with running(settings):
        lab = Lab(settings)
        yield lab
        lab.close()


@pytest.fixture
def cli_env(lab: Lab, monkeypatch) -> None:
    """The CLI (a fresh Lab from the environment) sees the test's lab and its databases."""
    s = lab.settings
    monkeypatch.setenv("LABKIT_DATA_DIR", str(s.data_dir))
    for name, value in (("LABKIT_PG_URL", s.pg_url), ("LABKIT_REDIS_URL", s.redis_url),
                        ("LABKIT_PG_SCHEMA", s.pg_schema), ("LABKIT_REDIS_PREFIX", s.redis_prefix),
                        ("LABKIT_EVENTS_DB", str(s.events_db)), ("LABKIT_READ_DB", str(s.read_db))):
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


def _healthy(lab: Lab) -> None:
    report = wait_until(lambda: (r := invariants.check(lab)) and not r.unfinished and r,
                        timeout=60, what="every saga ended")
    assert report.violations == []
    assert report.stuck == []


def _context(lab: Lab) -> dict[str, Any]:
    state = lab.challenge.active()
    assert state is not None
    return state["context"]


def fix_rewrite_target(lab: Lab) -> None:
    ingress = Path(_context(lab)["file"])
    text = ingress.read_text()
    assert "rewrite-target: /" in text
    kept = [ln for ln in text.splitlines()
            if "annotations:" not in ln and "rewrite-target" not in ln]
    ingress.write_text("\n".join(kept) + "\n")
    lab.restart("gateway")


def fix_stuck_saga(lab: Lab) -> None:
    lab.up(progress=False)  # order-service was down: start what is down


def fix_skipped_events(lab: Lab) -> None:
    lab.replay()


def fix_poison_event(lab: Lab) -> None:
    assert main(["events", "park", str(_context(lab)["position"]),
                 "--reason", "duplicate OrderConfirmed, total as a decimal string"]) == 0


def fix_replaying_projector(lab: Lab) -> None:
    lab.rollback("event-processor")
    lab.replay()


FIXES: dict[str, Callable[[Lab], None]] = {
    "rewrite-target": fix_rewrite_target,
    "stuck-saga": fix_stuck_saga,
    "skipped-events": fix_skipped_events,
    "poison-event": fix_poison_event,
    "replaying-projector": fix_replaying_projector,
}


def test_every_challenge_has_a_fix_here() -> None:
    assert set(FIXES) == set(CHALLENGES)
    assert len(CHALLENGES) >= 5
    for c in CHALLENGES.values():
        assert len(c.hints) >= 3, c.name


@pytest.mark.parametrize("name", list(FIXES))
def test_challenge(lab: Lab, cli_env: None, name: str, capsys) -> None:
    challenge = lab.challenge
    briefing = challenge.start(name)
    assert name in briefing

    # The CLI sees the same active challenge and reports it not solved (exit 1).
    capsys.readouterr()
    assert main(["challenge", "check"]) == 1
    assert "not done yet" in capsys.readouterr().out

    first, second = challenge.hint(), challenge.hint()
    assert first.startswith("hint 1 of") and second.startswith("hint 2 of")

    broken = challenge.check()
    assert not broken.ok and str(broken).startswith("❌"), str(broken)
    if name == "poison-event":  # said as soon as the processor fails on it again, not after 15 s
        assert "the event processor still fails on event #" in str(broken), str(broken)

    FIXES[name](lab)
    fixed = challenge.check()
    assert fixed.ok, str(fixed)
    assert challenge.active()["solved_at"]
    _healthy(lab)

    # Giving up on a fresh start repairs the lab.
    challenge.start(name)
    assert not challenge.check().ok
    capsys.readouterr()
    assert main(["challenge", "give-up"]) == 0
    said = capsys.readouterr().out
    assert f"gave up on {name}" in said and "None" not in said, said  # "(None events)" was
    assert challenge.active() is None
    _healthy(lab)
    assert lab.runtime.overrides() == {}
    wait_until(lambda: compare_users(lab) == [], timeout=30, what="the read side matching the log")
    assert all(r["status"] in ("ready", "running") for r in lab.runtime.status()), \
        lab.runtime.status()


def test_one_challenge_at_a_time(lab: Lab, cli_env: None) -> None:
    lab.challenge.start("skipped-events")
    try:
        assert main(["challenge", "start", "rewrite-target"]) == 1  # give up first
        assert lab.challenge.active()["name"] == "skipped-events"
    finally:
        lab.challenge.give_up()
    assert main(["challenge", "hint"]) == 1  # nothing active: one line, exit 1


def test_up_names_an_active_challenge(lab: Lab, capsys) -> None:
    # a later notebook's lab.up() on a lab a challenge still breaks: the student is told why
    lab.challenge.start("rewrite-target")
    try:
        capsys.readouterr()
        lab.up()
        assert "challenge rewrite-target is active: it breaks the lab on purpose" in \
            capsys.readouterr().out
    finally:
        lab.challenge.give_up()
    capsys.readouterr()
    lab.up()
    assert "is active" not in capsys.readouterr().out


def test_no_such_challenge(lab: Lab, cli_env: None, capsys) -> None:
    assert main(["challenge", "start", "nope"]) == 1
    assert "known: rewrite-target" in capsys.readouterr().err


def test_restart_keeps_a_deployed_change_and_rollback_drops_it(lab: Lab) -> None:
    """`labkit restart` restarts as deployed; `labkit rollback` goes back to the manifests."""
    lab.runtime.set_override("event-processor", {"LABKIT_CHALLENGE_DEFECT": "checkpoint-apart"},
                             "test build")
    try:
        lab.restart("event-processor")
        assert "test build" in next(r["detail"] for r in lab.runtime.status()
                                    if r["service"] == "event-processor")
        wait_until(lambda: "CHALLENGE DEFECT active" in lab.logs("event-processor", tail=20),
                   what="the defect announced in the processor's log")
    finally:
        lab.rollback("event-processor")
    assert lab.runtime.overrides() == {}
    with pytest.raises(Exception, match="nothing to roll back"):
        lab.rollback("event-processor")


def _decimal_totals_in_cents() -> None:
    """The plugin a student might write: read "129.00" as 12900 cents (a tolerant reader)."""
    from ecommerce.plugins import upcaster

    def cents(d):
        t = d.get("total")
        return {**d, "total": round(float(t) * 100) if isinstance(t, str) else t}

    upcaster("OrderConfirmed", 1, cents)


def test_poison_event_unblocked_by_a_tolerant_reader_still_fails_on_the_double_count(
        lab: Lab) -> None:
    """An upcaster that reads the decimal total gets the read side moving again, but projects
    the duplicate confirmation: the check says the dashboard counts one order twice."""
    challenge = lab.challenge
    challenge.start("poison-event")
    try:
        lab.deploy_code(_decimal_totals_in_cents, name="decimal_totals")
        verdict = challenge.check()
        assert not verdict.ok and "the order dashboard counts" in str(verdict), str(verdict)
    finally:
        challenge.give_up()  # parks the event
        lab.remove_code("decimal_totals")
    lab.replay()  # the parked event is skipped now: one confirmation per order again
    _healthy(lab)
    assert PoisonEvent._confirmed_counts(lab) is None
