"""On a real lab, a refused argument leaves the lab as it was: the gateway still answers, the
log has not grown, no plugin file waits for the next `lab.up()`, no account named 'None'."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.lab import Lab, LabError
from labkit.lab.plugins import PluginError, Plugins
from labkit.lab.scenarios import ScenarioError
from labkit.ops.admin_client import AdminError
from tests.integration.labs import full_lab

PLUGIN = "from ecommerce.plugins import upcaster\n\nupcaster('RefusedLegacy', 1, lambda d: d)\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with full_lab(tmp_path_factory.mktemp("refusals") / "data") as lab:
        yield lab


def head(lab: Lab) -> int:
    return int(lab._call("event-store-api", "GET", "/api/events",
                         params={"limit": 1})["last_position"])


def test_a_bad_rewrite_target_leaves_the_gateway_answering(lab: Lab) -> None:
    for target in (123, "nope"):
        with pytest.raises(LabError, match="a path starting with '/'"):
            lab.rewrite_target(target)
    assert lab.http("gateway").get("/api/inventory").status_code == 200


def test_refused_calls_append_nothing_to_the_log(lab: Lab) -> None:
    before = head(lab)
    assert before > 0
    for position, reason in ((2.7, "x"), (True, "x"), (1, None), (10**20, "x")):
        with pytest.raises(LabError):
            lab.park_event(position, reason)
    for options in ({"wait": True, "timeout": -1}, {"step": 0}, {"lines": []}):
        with pytest.raises(ScenarioError):
            lab.fire("orchestrator-crash", **options)
    with pytest.raises(LabError, match=r"unknown projection 'nope'; the lab runs .*users"):
        lab.projection_lag(1, projection="nope")
    with pytest.raises(AdminError):
        lab.admin.fund(None, 100)
    assert head(lab) == before
    assert lab.http("payment-service").get("/api/payments/accounts/None").status_code == 404


def test_an_unknown_restart_deploys_no_plugin(lab: Lab) -> None:
    with pytest.raises(PluginError, match=r"unknown process\(es\) nope"):
        lab.deploy_code(PLUGIN, name="upc1", restart=["nope"])
    assert not (Plugins(lab).directory / "upc1.py").exists()
