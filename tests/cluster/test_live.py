"""The lab on a real cluster: apply, route through the gateway, sagas, replay, crashes, cleanup.

Opt-in: `pytest -m cluster tests/cluster` (the default run deselects the `cluster` marker).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ecommerce.services.registry import SERVICES
from labkit.runtime import manifests as m
from labkit.runtime.cluster import ClusterRuntime
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def gw(lab_up: ClusterRuntime) -> Iterator[httpx.Client]:
    def routed() -> httpx.Client | None:
        try:
            client = lab_up.http("gateway", timeout=15)
            return client if client.get("/api/inventory").status_code == 200 else None
        except Exception:  # not routed yet (connection refused, port-forward not up, ...)
            return None

    # The gateway implementation programs the route after the HTTPRoute is applied.
    client = wait_until(routed, timeout=120, interval=2, what="the gateway to route /api/inventory")
    yield client
    client.close()


def test_every_workload_is_ready(lab_up: ClusterRuntime):
    rows = lab_up.status()
    bad = [r for r in rows if r["state"] not in ("ready", "suspended")]
    assert bad == []
    assert {r["name"] for r in rows} >= {"postgres", "redis", "order-service", "event-processor"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/users"), ("GET", "/api/orders"), ("GET", "/api/inventory"),
    ("GET", "/api/payments/accounts"), ("GET", "/api/queries/users"),
    ("GET", "/api/queries/user-stats"), ("GET", "/api/events"),
])
def test_the_gateway_routes_each_prefix_without_rewriting(gw: httpx.Client, method, path):
    r = gw.request(method, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_every_registry_route_is_served(gw: httpx.Client):
    for spec in SERVICES.values():
        for route in spec.routes:
            r = gw.get(route)
            assert r.status_code < 500, (route, r.status_code, r.text)


def test_cqrs_command_then_query_through_the_gateway(gw: httpx.Client, lab_up: ClusterRuntime):
    email = f"kim-{uuid.uuid4().hex[:8]}@example.com"
    r = gw.post("/api/commands/create-user", json={"name": "Kim", "email": email})
    assert r.status_code == 202, r.text
    user_id = r.json()["user_id"]
    lab_up.run_job("event-processor", timeout=300)  # the CronJob's work, now
    users = wait_until(lambda: gw.get("/api/queries/users").json(),
                       until=lambda users: any(u["id"] == user_id for u in users["users"]),
                       interval=1, what="the read side to show the new user")
    assert users["source"] == "materialized_view"


# --- sagas ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sagas(lab_up: ClusterRuntime) -> Iterator[Any]:
    """A SagaClient on the cluster's event store, through a port-forward to PostgreSQL."""
    from ecommerce.store.postgres_events import PostgresEventStore
    from labkit.lab.saga_client import SagaClient

    secret = lab_up.api.get("v1", "Secret", "postgres-credentials", lab_up.namespace)
    url = base64.b64decode(secret["data"]["url"]).decode()
    host, port = lab_up.forward("postgres", 5432)
    store = PostgresEventStore(url.replace("@postgres:5432/", f"@{host}:{port}/"))
    yield SagaClient(store)
    store.close()


def new_customer(gw: httpx.Client, balance: int) -> str:
    r = gw.post("/api/commands/create-user", json={
        "name": "Saga Tester", "email": f"s-{uuid.uuid4().hex[:8]}@example.com"})
    assert r.status_code == 202, r.text
    user_id = r.json()["user_id"]
    r = gw.post("/api/payments/accounts", json={"account_id": user_id, "initial_balance": balance})
    assert r.status_code in (200, 201), r.text
    return user_id


def order_status(gw: httpx.Client, order_id: str) -> str:
    return gw.get(f"/api/orders/{order_id}").json()["status"]


def test_saga_happy_path(gw, sagas):
    user = new_customer(gw, 1_000_000)
    sid = sagas.place_order(user, [("MOUSE-WL", 1)])
    view = sagas.wait(sid, timeout=120)
    assert view["status"] == "completed", view
    assert order_status(gw, f"ord-{sid}") == "CONFIRMED"


def test_saga_payment_declined_is_compensated(gw, sagas):
    user = new_customer(gw, 0)
    before = gw.get("/api/inventory/MOUSE-WL").json()["available"]
    sid = sagas.place_order(user, [("MOUSE-WL", 1)])
    view = sagas.wait(sid, timeout=120)
    assert view["status"] == "compensated", view
    assert order_status(gw, f"ord-{sid}") == "CANCELLED"
    assert gw.get("/api/inventory/MOUSE-WL").json()["available"] == before  # stock released


def test_saga_insufficient_stock_is_compensated(gw, sagas):
    user = new_customer(gw, 1_000_000)
    sid = sagas.place_order(user, [("HEADSET-BT", 10_000)])
    assert sagas.wait(sid, timeout=120)["status"] == "compensated"
    assert gw.get(f"/api/payments/accounts/{user}").json()["balance"] == 1_000_000


def test_saga_survives_an_orchestrator_crash(gw, sagas, lab_up: ClusterRuntime):
    user = new_customer(gw, 1_000_000)
    sid = sagas.place_order(user, [("KEYBOARD-MX", 1)], crash_after="3:StepSucceeded")
    view = sagas.wait(sid, timeout=300)  # the Deployment restarts the killed orchestrator
    assert view["status"] == "completed", view
    assert order_status(gw, f"ord-{sid}") == "CONFIRMED"


def test_killed_participant_pods_come_back(lab_up: ClusterRuntime):
    killed = lab_up.kill("order-service")
    assert killed
    dep = next(o for o in lab_up.objects("02-saga") if o["metadata"]["name"] == "order-service")
    lab_up.wait([dep], timeout=300)
    r = lab_up.http("order-service").get("/readyz")
    assert r.status_code == 200


# --- replay and cleanup -----------------------------------------------------------------------

def test_replay_job_and_replay_endpoint(gw: httpx.Client, lab_up: ClusterRuntime):
    name = lab_up.run_job("event-replay", timeout=600)
    assert name.startswith("event-replay-manual-")
    assert lab_up.logs(name)
    r = gw.post("/api/events/replay", json={})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


def test_a_deployed_projection_plugin_is_served_then_removed(gw: httpx.Client,
                                                              lab_up: ClusterRuntime):
    """lab.deploy_code in cluster mode: the ConfigMap reaches the rolled pods, query-service
    serves the plugin's view, and remove_code takes it away again."""
    from types import SimpleNamespace

    from labkit.lab.plugins import Plugins

    source = (
        "from ecommerce.domain.readmodel import Incr\n"
        "from ecommerce.plugins import projection\n"
        "from ecommerce.projections.base import Projection\n\n"
        "def placed(e):\n"
        "    return [Incr('live_orders', e.data['user_id'], {'orders': 1})]\n\n"
        "projection(Projection('live-orders', ('live_orders',), {'OrderPlaced': placed}))\n")
    lab = SimpleNamespace(mode="cluster", runtime=lab_up)
    try:
        out = Plugins(lab).deploy(source, name="live_orders")
        assert "query-service" in out["restarted"]
        r = gw.get("/api/queries/views/live-orders")
        assert r.status_code == 200 and r.json()["view"] == "live-orders", r.text
    finally:
        Plugins(lab).remove("live_orders")
    assert gw.get("/api/queries/views/live-orders").status_code == 404


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_course_commands_from_the_load_tester(lab_up: ClusterRuntime):
    ns = lab_up.namespace

    def exec_(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "exec", "-n", m.TESTING_NAMESPACE,
                               "deployment/load-tester", "--", *cmd],
                              capture_output=True, text=True, timeout=60)

    r = exec_("curl", "-s", f"http://query-service.{ns}.svc.cluster.local/api/queries/users")
    assert r.returncode == 0 and '"materialized_view"' in r.stdout, r.stderr
    r = exec_("nslookup", f"command-service.{ns}.svc.cluster.local")
    assert r.returncode == 0, r.stderr
    # Default deny: the load-tester has no business with the database.
    r = exec_("curl", "-s", "--max-time", "3", f"telnet://postgres.{ns}.svc.cluster.local:5432")
    assert r.returncode != 0


def test_zz_cleanup_removes_exactly_the_lab(rt: ClusterRuntime, lab_up: ClusterRuntime):
    """Runs last (last in this file): down(), then nothing with the lab's labels is left."""
    rt.close()
    rt.down(timeout=300)
    assert rt.leftovers() == []
    assert rt.down() == []
