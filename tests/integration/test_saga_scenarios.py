"""The order saga end to end: real participant processes, the real orchestrator process, real
HTTP and the real event store, on SQLite and on PostgreSQL + Redis.

Every scenario of `lab.fire` from the Python API, the CLI, the query-service view, the
Kubernetes-Job mode (`run --pending`) resuming after a SIGKILL, and two orchestrators at once.
After each test the invariants must hold (`labkit.ops.invariants`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ecommerce.config import REPO_DIR, service_url_var
from ecommerce.domain import saga as s
from ecommerce.services.registry import PARTICIPANTS
from labkit.lab import Lab
from labkit.lab.scenarios import ScenarioError, ScenarioNotice
from labkit.ops import invariants
from tests.conftest import require_postgres, require_redis
from tests.integration.labs import lab_settings, running
from tests.waiting import WaitTimeout, wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def lab(request, tmp_path_factory) -> Iterator[Lab]:
    data_dir = tmp_path_factory.mktemp("saga")
    if request.param == "sqlite":
        settings = lab_settings(data_dir)
    else:
        settings = lab_settings(data_dir, pg_url=require_postgres(), redis_url=require_redis())
    with running(settings, faults=True):  # the failure scenarios arm faults
        lab = Lab(settings)
        yield lab
        lab.close()


@pytest.fixture(autouse=True)
def invariants_hold(lab: Lab) -> Iterator[None]:
    yield
    try:
        report = wait_until(lambda: invariants.check(lab), until=lambda r: not r.unfinished,
                            timeout=30, interval=0.1, what="every saga to end")
    except WaitTimeout as late:
        report = late.last
    assert report.unfinished == []
    assert report.violations == []


def shape(view: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on timing: statuses of the saga and of every action."""
    return {"status": view["status"], "failure": view["failure"],
            **{k: view[k]["status"] for k in view["actions"] + view["compensations"]}}


def orchestrator_pid(lab: Lab) -> int | None:
    return next(r["pid"] for r in lab.runtime.status() if r["service"] == "saga-orchestrator")


def get(lab: Lab, service: str, path: str) -> Any:
    r = lab.http(service).get(path)
    return r.status_code, r.json()


def test_happy(lab: Lab) -> None:
    sid = lab.fire("happy")
    view = lab.saga.wait(sid)
    assert view["status"] == "completed"
    assert all(view[a]["status"] == "succeeded" and view[a]["attempts"] == 1
               for a in view["actions"])
    assert get(lab, "order-service", f"/api/orders/{view['order_id']}")[1]["status"] == "CONFIRMED"
    code, payment = get(lab, "payment-service", f"/api/payments/{view['order_id']}")
    assert (code, payment["status"], payment["amount"]) == (200, "CHARGED", view["amount"])


def test_payment_declined_compensates_in_reverse(lab: Lab) -> None:
    view = lab.saga.wait(lab.fire("payment-declined"))
    assert (view["status"], view["failure"], view["failed_step"]) == (
        "compensated", "declined", "charge_payment")
    assert view["release_stock"]["status"] == view["cancel_order"]["status"] == "succeeded"
    assert view["release_stock"]["ended_at"] <= view["cancel_order"]["started_at"]
    assert view["refund_payment"]["status"] == "pending"  # nothing was charged
    assert get(lab, "order-service", f"/api/orders/{view['order_id']}")[1]["status"] == "CANCELLED"


def test_out_of_stock(lab: Lab) -> None:
    view = lab.saga.wait(lab.fire("out-of-stock"))
    assert (view["status"], view["failure"]) == ("compensated", "insufficient_stock")
    assert view["cancel_order"]["status"] == "succeeded"


def test_invalid_user_stops_at_step_one(lab: Lab) -> None:
    view = lab.saga.wait(lab.fire("invalid-user"))
    assert (view["status"], view["failure"], view["failed_step"]) == (
        "compensated", "invalid_user", "validate_user")
    assert view["create_order"]["status"] == "pending"
    assert get(lab, "order-service", f"/api/orders/{view['order_id']}")[0] == 404


def test_payment_timeout_retries_then_refunds(lab: Lab) -> None:
    view = lab.saga.wait(lab.fire("payment-timeout"), timeout=60)
    assert (view["status"], view["failure"]) == ("compensated", "deadline_exceeded")
    assert view["charge_payment"]["attempts"] >= 3
    assert view["refund_payment"]["status"] == "succeeded"
    # The slow charge did land (the participant only answered too late): it was refunded.
    code, payment = get(lab, "payment-service", f"/api/payments/{view['order_id']}")
    assert code == 200 and payment["status"] in ("REFUNDED", "VOIDED")
    rows = lab.saga.timeline(view["saga_id"])
    charge = rows[(rows.step == "charge_payment") & (rows.kind == "action")]
    assert list(charge.outcome)[:-1] == ["retried"] * (len(charge) - 1)
    assert list(charge.outcome)[-1] == "failed"


def test_inventory_flaky_retries_then_succeeds(lab: Lab) -> None:
    view = lab.saga.wait(lab.fire("inventory-flaky"))
    assert view["status"] == "completed"
    assert view["reserve_stock"]["attempts"] == 4


def test_orchestrator_crash_resumes_and_equals_the_uncrashed_run(lab: Lab) -> None:
    before = orchestrator_pid(lab)
    reference = lab.saga.wait(lab.fire("happy"))
    stock_before = get(lab, "inventory-service", "/api/inventory/MOUSE-WL")[1]["available"]
    view = lab.saga.wait(lab.fire("orchestrator-crash", step=3))
    after = orchestrator_pid(lab)
    assert after is not None and after != before  # it really died and a new one took over
    assert shape(view) == shape(reference)
    events = lab.saga.store.read_stream(s.stream_id(view["saga_id"]))
    owners = {e.metadata["owner"] for e in events[1:]}
    assert len(owners) == 2  # two orchestrator processes drove it
    assert get(lab, "order-service", f"/api/orders/{view['order_id']}")[1]["status"] == "CONFIRMED"
    assert get(lab, "payment-service", f"/api/payments/{view['order_id']}")[1]["status"] == "CHARGED"
    assert get(lab, "inventory-service",
               "/api/inventory/MOUSE-WL")[1]["available"] == stock_before - 1


def _env(lab: Lab, **extra: str) -> dict[str, str]:
    st = lab.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update(LABKIT_DATA_DIR=str(st.data_dir), LABKIT_EVENTS_DB=str(st.events_db),
               LABKIT_READ_DB=str(st.read_db), LABKIT_PG_SCHEMA=st.pg_schema,
               LABKIT_REDIS_PREFIX=st.redis_prefix)
    if st.pg_url:
        env["LABKIT_PG_URL"] = st.pg_url
    if st.redis_url:
        env["LABKIT_REDIS_URL"] = st.redis_url
    for p in PARTICIPANTS:
        env[service_url_var(p)] = lab.url(p)
    env.update(extra)
    return env


def saga_cli(lab: Lab, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`labkit saga ...` (the student's commands; `run` is the orchestrator's entrypoint)."""
    return subprocess.run([sys.executable, "-m", "labkit.cli", "saga", *args], env=_env(lab, **env),
                          capture_output=True, text=True, timeout=120, cwd=REPO_DIR)


def orchestrator(lab: Lab, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m ecommerce.saga ...`: what the Job's container runs."""
    return subprocess.run([sys.executable, "-m", "ecommerce.saga", *args], env=_env(lab, **env),
                          capture_output=True, text=True, timeout=120, cwd=REPO_DIR)


def test_cli_place_status_list_timeline(lab: Lab) -> None:
    done = saga_cli(lab, "place", "--user", "alice", "--line", "MOUSE-WL:2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["status"] == "completed" and view["amount"] == 2 * 2500
    sid = view["saga_id"]
    status = saga_cli(lab, "status", sid)
    assert status.returncode == 0 and "COMPLETED" in status.stdout and "charge_payment" in status.stdout
    listed = json.loads(saga_cli(lab, "list", "--json", "--limit", "500").stdout)
    assert sid in {row["saga_id"] for row in listed}
    rows = json.loads(saga_cli(lab, "timeline", sid, "--json").stdout)
    assert [r["step"] for r in rows] == list(s.STEP_NAMES)
    assert saga_cli(lab, "status", "no-such-saga").returncode == 2


def test_query_service_serves_the_same_view(lab: Lab) -> None:
    sid = lab.fire("payment-declined", wait=True)
    head = lab.saga.store.last_position()
    lab.wait_for_projection(head, projection="sagas", timeout=20)
    served = lab.query(f"sagas/{sid}")
    for k in ("source", "last_updated", "checkpoint"):
        served.pop(k, None)
    assert served == lab.saga.status(sid)
    listing = lab.query("sagas", limit=1000)
    assert sid in {d["saga_id"] for d in listing["sagas"]}


def test_job_mode_killed_mid_saga_resumes_on_the_next_run(lab: Lab) -> None:
    """The Kubernetes Job story: `run --pending` dies (SIGKILL) in the middle; the Job's next
    pod (backoffLimit) runs the same command and finishes every saga."""
    lab.kill("saga-orchestrator")
    try:
        ids = [lab.saga.place_order("alice", [("MOUSE-WL", 1)]) for _ in range(3)]
        first = orchestrator(lab, "run", "--pending", LABKIT_SAGA_CRASH_AFTER="4:StepSucceeded")
        assert first.returncode == -9, first.stdout + first.stderr
        states = [lab.saga.state(i) for i in ids]
        assert not all(st.terminal for st in states)
        second = orchestrator(lab, "run", "--pending")
        assert second.returncode == 0, second.stdout + second.stderr
        assert json.loads(second.stdout.strip().splitlines()[-1])["unfinished"] == 0
        assert [lab.saga.state(i).status for i in ids] == ["completed"] * 3
        out = lab.run_job("saga-orchestrator")  # the manifest's Job: nothing left to do
        summary = json.loads([ln for ln in out.splitlines() if '"resumed"' in ln][-1])
        assert (summary["resumed"], summary["unfinished"], summary["stuck"]) == (0, 0, 0), out
    finally:
        lab.runtime.up(wait=True, progress=False)


def test_two_orchestrators_at_once_apply_every_effect_once(lab: Lab) -> None:
    log = lab.settings.data_dir / "second-orchestrator.log"
    with log.open("wb") as out:
        second = subprocess.Popen([sys.executable, "-m", "ecommerce.saga", "run", "--follow"],
                                  env=_env(lab), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR)
    try:
        wait_until(lambda: "following the log" in log.read_text(errors="replace"),
                   what="the second orchestrator to follow the log")
        ids = [lab.saga.place_order("alice", [("MOUSE-WL", 1)]) for _ in range(20)]
        views = lab.saga.wait_all(ids, timeout=60)
        assert {v["status"] for v in views} == {"completed"}
        for sid in ids:
            events = lab.saga.store.read_stream(s.stream_id(sid))
            started = [e.data["step"] for e in events if e.type == s.STEP_STARTED]
            assert len(started) == len(set(started)) == 5  # each step decided once
    finally:
        second.terminate()
        second.wait(10)


def _saga_count(lab: Lab) -> int:
    return len(lab.saga.store.read_all(0, 100_000, types=[s.SAGA_STARTED]))


@pytest.mark.parametrize("scenario, options, sentence", [
    ("payment-declined", {"user": "alice"},
     "payment-declined needs a customer who cannot pay, and 'alice' can"),
    ("out-of-stock", {"lines": [("MOUSE-WL", 1)]},
     "out-of-stock needs a line for more than the warehouse has"),
    ("invalid-user", {"user": "alice"},
     "invalid-user needs a user id nobody registered, and 'alice' is registered"),
    ("happy", {"lines": [("NO-SUCH-SKU", 1)]}, "lines: "),
])
def test_options_that_contradict_the_scenario_are_refused_before_a_saga_starts(
        lab: Lab, scenario: str, options: dict[str, Any], sentence: str) -> None:
    lab.fire("happy", wait=True)  # alice exists, with money
    before = _saga_count(lab)
    with pytest.raises(ScenarioError, match=re.escape(sentence)):
        lab.fire(scenario, **options)
    assert _saga_count(lab) == before


def test_payment_declined_still_declines_after_bob_was_funded(lab: Lab) -> None:
    """Money can be added, not taken away: a bob who can pay now is stood in for by a new
    customer who starts as bob did, and the notebook is told."""
    lab.fire("payment-declined", wait=True)  # bob exists
    lab.admin.fund("bob", 10_000_000)
    bob = lab.http("payment-service").get("/api/payments/accounts/bob").json()["balance"]
    with pytest.warns(ScenarioNotice, match=r"bob holds [\d,]+ cents now .* customer is bob-"):
        view = lab.saga.wait(lab.fire("payment-declined"))
    assert (view["status"], view["failure"]) == ("compensated", "declined")
    customer = lab.saga.state(view["saga_id"]).user_id
    assert customer.startswith("bob-")
    assert lab.http("payment-service").get("/api/payments/accounts/bob").json()["balance"] == bob
    # and the notebook's checkpoint watches the stand-in's balance, so it still passes
    from labkit.workbook.checks import saga_compensates

    ok, detail = saga_compensates(lab)
    assert ok, detail


def test_faults_left_armed_are_named_when_a_scenario_fires(lab: Lab) -> None:
    # kept (arming a fault, then firing, is how one breaks the system on purpose), but named:
    # `happy` ending declined had no reason on screen
    lab.faults.inject("payment-service", "decline", times=50)
    try:
        with pytest.warns(ScenarioNotice, match=re.escape(
                "faults are armed and may change how happy ends: payment-service decline x50 "
                "(lab.faults.clear() disarms them)")):
            view = lab.saga.wait(lab.fire("happy"))
        assert (view["status"], view["failure"]) == ("compensated", "declined")
    finally:
        lab.faults.clear()
