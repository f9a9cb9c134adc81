"""The notebook API refuses a bad argument before it changes anything: no gateway restart, no
plugin file, no parked event, no fault injection, no saga, no command, no admin request.

Each refusal is checked against a lab whose side effects are recorded instead of done: the
check comes before any of them, so none of these tests needs a running lab."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from ecommerce import plugins
from ecommerce.projections import parking
from ecommerce.store.base import MAX_INT64
from labkit.lab import Lab, LabError
from labkit.lab.plugins import PluginError, Plugins
from labkit.lab.scenarios import ScenarioError, fire
from labkit.ops.admin_client import Admin, AdminError

PLUGIN = '''
from ecommerce.plugins import upcaster

upcaster("RefusalsLegacy", 1, lambda d: d)
'''


class Recorder:
    """Stands in for a side effect: records each call."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.answer = answer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        return self.answer


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Lab:
    monkeypatch.setenv("LABKIT_MODE", "local")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    return Lab(gateway_port=0)


@pytest.mark.parametrize("target", [123, "nope", "", b"/"])
def test_rewrite_target_refuses_a_non_path_and_leaves_the_gateway_running(
        lab: Lab, monkeypatch: pytest.MonkeyPatch, target: Any) -> None:
    restart = Recorder({"service": "gateway"})
    monkeypatch.setattr(lab.runtime, "restart_gateway", restart)
    with pytest.raises(LabError, match=r"the rewrite target is a path starting with '/'"):
        lab.rewrite_target(target)
    assert restart.calls == []
    lab.rewrite_target("/")
    lab.rewrite_target(None)
    assert restart.calls == [("/",), (None,)]


@pytest.mark.parametrize("faults", ["no", "false", 0, 1])
def test_up_refuses_faults_other_than_true_false_or_none(
        lab: Lab, monkeypatch: pytest.MonkeyPatch, faults: Any) -> None:
    up = Recorder()
    monkeypatch.setattr(lab.runtime, "up", up)
    with pytest.raises(LabError, match=r"faults must be True .*, False .* or None"):
        lab.up(faults=faults)
    assert up.calls == []


@pytest.mark.parametrize("position, reason", [
    (2.7, "x"), (True, "x"), (None, "x"), ("abc", "x"), (0, "x"), (10**20, "x"),
    (3, None), (3, ""), (3, "  "), (3, 7),
])
def test_park_event_refuses_anything_but_a_position_and_a_reason(
        lab: Lab, monkeypatch: pytest.MonkeyPatch, position: Any, reason: Any) -> None:
    park = Recorder({"position": position})
    monkeypatch.setattr(parking, "park", park)
    with pytest.raises(LabError, match=r"(a whole number from 1 to \d+|say why the event is "
                                       r"parked)"):
        lab.park_event(position, reason)
    assert park.calls == []


def test_park_event_takes_the_largest_position_and_a_dataframe_integer(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    park = Recorder({})
    monkeypatch.setattr(parking, "park", park)
    monkeypatch.setattr(Lab, "saga", SimpleNamespace(store="store"))
    lab.park_event(MAX_INT64, "x")
    lab.park_event(np.int64(2), "poison")
    assert [c[1:3] for c in park.calls] == [(MAX_INT64, "x"), (2, "poison")]


class UntouchableLab:
    """A lab where any use (a customer set up, a fault, a saga placed) fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"fire used lab.{name} before refusing its options")


@pytest.mark.parametrize("options, sentence", [
    ({"wait": True, "timeout": -1}, "timeout is a number of seconds >= 0"),
    ({"timeout": "10"}, "timeout is a number of seconds >= 0"),
    ({"user": ""}, "user is a user id"),
    ({"user": 42}, "user is a user id"),
    ({"lines": []}, "lines is a non-empty list of"),
    ({"lines": "MOUSE-WL"}, "lines is a non-empty list of"),
])
@pytest.mark.parametrize("scenario", ["happy", "orchestrator-crash"])
def test_fire_refuses_bad_options_before_it_sets_anything_up(
        scenario: str, options: dict[str, Any], sentence: str) -> None:
    with pytest.raises(ScenarioError, match=sentence):
        fire(UntouchableLab(), scenario, **options)


@pytest.mark.parametrize("step", [0, 6, "nope", True])
def test_fire_refuses_a_crash_step_that_does_not_exist(step: Any) -> None:
    with pytest.raises(ScenarioError, match="step is where orchestrator-crash crashes: 1-5"):
        fire(UntouchableLab(), "orchestrator-crash", step=step)


@pytest.mark.parametrize("scenario", ["happy", "payment-declined", "inventory-flaky"])
def test_fire_refuses_a_crash_step_for_a_scenario_without_a_crash(scenario: str) -> None:
    # it used to be ignored: the saga ran without the crash the student asked for
    with pytest.raises(ScenarioError, match=f"{scenario} has no crash: leave step out"):
        fire(UntouchableLab(), scenario, step=3)


def test_projection_waits_refuse_an_unknown_projection_before_sending_or_waiting(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    command = Recorder({"position": 1})
    monkeypatch.setattr(lab, "command", command)
    monkeypatch.setattr(lab, "query", Recorder({"checkpoints": {
        "users": {"position": 0}, "orders-per-user": {"position": 0}}}))
    for call in (lambda: lab.projection_lag(1, projection="nope"),
                 lambda: lab.wait_for_projection(1, projection="nope", timeout=0.3)):
        with pytest.raises(LabError, match=r"unknown projection 'nope'; the lab runs .*"
                                           r"orders-per-user, .*users"):
            call()
    assert command.calls == []


@pytest.mark.parametrize("call, sentence", [
    (lambda a: a.fund(None, 100), "account_id is an account's id"),
    (lambda a: a.fund("", 100), "account_id is an account's id"),
    (lambda a: a.fund("a/b", 100), "account_id is an account's id"),
    (lambda a: a.fund("alice\n", 100), "account_id is an account's id"),
    (lambda a: a.restock(None, 5), "sku is a product code"),
    (lambda a: a.restock("", 5), "sku is a product code"),
])
def test_admin_commands_refuse_a_bad_id_before_the_request(
        monkeypatch: pytest.MonkeyPatch, call: Any, sentence: str) -> None:
    post = Recorder()
    monkeypatch.setattr(httpx, "post", post)
    with pytest.raises(AdminError, match=sentence):
        call(Admin(lambda _: "http://127.0.0.1:9", "token"))
    assert post.calls == []


def test_deploy_code_refuses_an_unknown_restart_before_writing_the_plugin(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    restart = Recorder([])
    monkeypatch.setattr(lab.runtime, "restart", restart)
    deployed = Plugins(lab).directory / "upc1.py"
    try:
        with pytest.raises(PluginError, match=r"restart: unknown process\(es\) nope"):
            lab.deploy_code(PLUGIN, name="upc1", restart=["nope"])
        assert not deployed.exists() and "upc1" not in plugins.LOADED
        assert restart.calls == []
        lab.deploy_code(PLUGIN, name="upc1", restart=iter(["query-service"]))
        assert deployed.exists() and restart.calls == [(["query-service"],)]
    finally:
        plugins.unload("upc1")
