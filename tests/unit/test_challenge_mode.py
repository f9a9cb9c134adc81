"""Challenge mode without a running lab: the client's state and hints, the check contract (never
raises), and the broken Ingress the rewrite-target challenge applies (parsed by the gateway's
own route reader)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ecommerce.config import REPO_DIR
from labkit.lab.challenges import Challenge, ChallengeClient, ChallengeError, CheckResult, registry
from labkit.lab.challenges import client as client_module
from labkit.lab.challenges.rewrite_target import break_ingress
from labkit.runtime.routes import routes_from


class Fake(Challenge):
    name = "fake"
    title = "a fake"
    story = "order {order} is stuck"
    hints = ("look at {order}", "look closer", "do the fix")

    def __init__(self) -> None:
        self.fixed = False
        self.gave_up = 0

    def start(self, lab: Any) -> dict[str, Any]:
        return {"order": "o-1"}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        if context["order"] != "o-1":
            raise RuntimeError("lost the context")
        if not self.fixed:
            raise ConnectionError("service down")  # a check that breaks must not raise
        return CheckResult(True, "fixed")

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        self.gave_up += 1
        return "repaired"


@pytest.fixture
def fake(monkeypatch) -> Fake:
    challenge = Fake()
    table = {"fake": challenge}
    monkeypatch.setattr(registry, "CHALLENGES", table)
    monkeypatch.setattr(client_module, "CHALLENGES", table)
    return challenge


def _lab(tmp_path: Path) -> Any:
    return SimpleNamespace(mode="cluster", settings=SimpleNamespace(data_dir=tmp_path))


def test_state_hints_check_and_give_up(tmp_path: Path, fake: Fake) -> None:
    client = ChallengeClient(_lab(tmp_path))
    assert "order o-1 is stuck" in client.start("fake")
    # Another client (the CLI, another kernel) sees the same active challenge.
    other = ChallengeClient(_lab(tmp_path))
    assert other.active()["name"] == "fake"
    assert other.hint() == "hint 1 of 3: look at o-1"
    assert client.hint().startswith("hint 2 of 3")
    assert client.hint().startswith("hint 3 of 3 (the last one: it is the fix)")
    assert client.hint().startswith("hint 3 of 3")  # no more: the last one again

    broken = client.check()
    assert not broken.ok and "service down" in str(broken) and str(broken).startswith("❌")
    with pytest.raises(ChallengeError, match="still active"):
        client.start("fake")

    fake.fixed = True
    assert client.check().ok
    assert client.active()["solved_at"] and client.active()["solved_after_hints"] == 3
    client.start("fake")  # a solved challenge may be started again
    assert "repaired" in client.give_up() and fake.gave_up == 1
    assert client.active() is None
    with pytest.raises(ChallengeError, match="no challenge is active"):
        client.hint()
    assert not client.check().ok  # nothing active: a ❌ that says so, no exception


def test_unknown_challenge_lists_the_known_ones(tmp_path: Path, fake: Fake) -> None:
    with pytest.raises(ChallengeError, match="known: fake"):
        ChallengeClient(_lab(tmp_path)).start("nope")


def test_check_result_reads_as_a_sentence() -> None:
    ok = CheckResult(True, "all good")
    bad = CheckResult(False, "2 of 5 fail", "every one 200", ("a", "b"))
    assert str(ok) == "✅ all good" and ok
    assert str(bad).splitlines() == ["❌ not done yet: 2 of 5 fail", "   expected: every one 200",
                                     "   - a", "   - b"]
    assert not bad


def test_check_with_no_challenge_active_says_there_is_nothing_to_check(
        tmp_path: Path, fake: Fake) -> None:
    result = ChallengeClient(_lab(tmp_path)).check()
    assert not result.ok and str(result).startswith("❌ nothing to check: no challenge is active")


def test_the_broken_ingress_rewrites_every_path_to_slash() -> None:
    text = (REPO_DIR / "manifests" / "01-networking" / "ingress.yaml").read_text()
    good = routes_from([yaml.safe_load(text)])
    broken = routes_from([yaml.safe_load(break_ingress(text))])
    assert [r.path for r in broken] == [r.path for r in good]
    assert all(r.rewrite_target is None and r.upstream_path(r.path) == r.path for r in good)
    assert all(r.upstream_path(r.path + "/7") == "/" for r in broken)
    assert "rewrite-target" not in "".join(ln for ln in text.splitlines() if not ln.startswith("#"))
