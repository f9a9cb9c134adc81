"""Cluster mode's saga path, exercised locally: with no database access the saga API starts
sagas through command-service (`place-order`) and reads them through event-store-api."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecommerce.domain.saga import SagaRuleError
from ecommerce.store.http_events import HttpEventStore, ReadOnlyStoreError
from labkit.lab import Lab
from labkit.lab.scenarios import ensure_customer
from tests.integration.labs import lab_settings


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    lab = Lab(lab_settings(tmp_path_factory.mktemp("http-saga")))
    try:
        lab.up(progress=False)
        ensure_customer(lab, "alice")
        # What cluster mode looks like to the saga API: same URLs, no database.
        lab.mode = "cluster"
        yield lab
    finally:
        lab.mode = "local"
        lab.down()


def test_a_saga_started_and_read_over_http_completes(lab: Lab) -> None:
    saga = lab.saga
    assert isinstance(saga.store, HttpEventStore)
    sid = saga.place_order("alice", [("MOUSE-WL", 2)])
    view = saga.wait(sid, timeout=20)
    assert view["status"] == "completed"
    order = lab.http("order-service").get(f"/api/orders/{view['order_id']}").json()
    assert order["status"] == "CONFIRMED" and order["total"] == 2 * 2500
    timeline = saga.timeline([sid])
    assert list(timeline["step"].unique())[:2] == ["validate_user", "create_order"]
    assert sid in {v["saga_id"] for v in saga.summaries()}


def test_a_refused_saga_over_http_is_compensated(lab: Lab) -> None:
    sid = lab.saga.place_order("nobody-registered", [("MOUSE-WL", 1)])
    assert lab.saga.wait(sid, timeout=20)["status"] == "compensated"


def test_place_order_is_idempotent_and_validated(lab: Lab) -> None:
    client = lab.http("command-service")
    body = {"user_id": "alice", "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}
    first = client.post("/api/commands/place-order", json=body, headers={"Idempotency-Key": "po-1"})
    again = client.post("/api/commands/place-order", json=body, headers={"Idempotency-Key": "po-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["saga_id"] == again.json()["saga_id"]
    assert lab.saga.wait(first.json()["saga_id"], timeout=20)["status"] == "completed"
    bad = client.post("/api/commands/place-order", json={"user_id": "alice", "lines": []})
    assert bad.status_code == 422
    unknown = client.post("/api/commands/place-order",
                          json={"user_id": "alice", "lines": [{"sku": "NOPE", "quantity": 1}]})
    assert unknown.status_code == 422 and unknown.json()["reason"] == "unknown_sku"
    with pytest.raises(SagaRuleError, match="'NOPE' is not in the catalogue: choose one of"):
        lab.saga.place_order("alice", [("NOPE", 1)])  # the notebook's API says the same


def test_the_http_store_never_writes(lab: Lab) -> None:
    store = lab.saga.store
    with pytest.raises(ReadOnlyStoreError, match="command-service"):
        store.append("saga-x", [], "none")
    assert store.stream_version("saga-does-not-exist") == 0
    assert store.last_position() >= store.count_events() > 0
