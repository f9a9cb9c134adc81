"""CQRS end to end over real HTTP between real processes: command-service appends events,
the event processor projects them, query-service answers only from the read model, and
event-store-api browses and replays the log. On SQLite, and on PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from labkit.runtime.local import LocalRuntime
from tests.conftest import require_postgres, require_redis
from tests.integration.labs import lab_settings, running
from tests.waiting import wait_until

SERVICES = ["command-service", "query-service", "event-store-api", "event-processor"]


def utc_day() -> str:
    """query-service's "today" (`new_users_today`): the UTC date. A test that spans midnight UTC
    sees two days, and compares today's count only when it did not."""
    return datetime.now(UTC).date().isoformat()


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def lab(request, tmp_path_factory) -> Iterator[LocalRuntime]:
    data_dir = tmp_path_factory.mktemp("cqrs")
    if request.param == "sqlite":
        settings = lab_settings(data_dir)
    else:
        settings = lab_settings(data_dir, pg_url=require_postgres(), redis_url=require_redis())
    with running(settings, SERVICES) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def cmd(lab) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab.url("command-service"), timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def qry(lab) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab.url("query-service"), timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def evs(lab) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab.url("event-store-api"), timeout=30) as c:
        yield c


def wait_visible(qry: httpx.Client, position: int, projection: str = "users") -> None:
    def applied() -> bool:
        cps = qry.get("/api/queries/checkpoints").json()["checkpoints"]
        return bool(cps.get(projection, {}).get("position", 0) >= position)

    wait_until(applied, what=f"projection {projection} to apply position {position}")


def create(cmd: httpx.Client, name: str, email: str, **extra) -> dict:
    r = cmd.post("/api/commands/create-user", json={"name": name, "email": email, **extra})
    assert r.status_code == 202, r.text
    return r.json()


def test_a_command_becomes_an_event_and_then_a_view(cmd, qry, evs) -> None:
    accepted = create(cmd, "John Doe", "john@example.com")
    assert accepted["status"] == "accepted" and accepted["type"] == "CreateUserCommand"
    wait_visible(qry, accepted["position"])
    users = qry.get("/api/queries/users").json()
    assert users["source"] == "materialized_view" and users["last_updated"]
    assert users["checkpoint"] >= accepted["position"]
    mine = [u for u in users["users"] if u["id"] == accepted["user_id"]]
    assert mine and mine[0]["email"] == "john@example.com" and mine[0]["status"] == "active"
    stream = evs.get(f"/api/events/streams/user-{accepted['user_id']}").json()
    assert [e["event_type"] for e in stream["events"]] == ["UserCreated"]
    assert stream["events"][0]["event_id"] == accepted["event_id"]


def test_stats_count_creations_and_deactivations(cmd, qry) -> None:
    day = utc_day()
    before_cp = qry.get("/api/queries/user-stats").json()
    a = create(cmd, "Stat A", "a@example.com")
    create(cmd, "Stat B", "b@example.com")
    r = cmd.post("/api/commands/deactivate-user", json={"user_id": a["user_id"], "reason": "test"})
    assert r.status_code == 202, r.text
    wait_visible(qry, r.json()["position"], "user-stats")
    after = qry.get("/api/queries/user-stats").json()
    assert after["source"] == "aggregated_view"
    assert after["total_users"] == before_cp["total_users"] + 2
    assert after["active_users"] == before_cp["active_users"] + 1
    if utc_day() == day:
        assert after["new_users_today"] >= 2
    inactive = qry.get("/api/queries/users", params={"status": "inactive"}).json()["users"]
    assert a["user_id"] in {u["id"] for u in inactive}


def test_a_stale_expected_version_is_a_409_that_says_to_retry(cmd) -> None:
    user = create(cmd, "Race", "race@example.com")
    first = cmd.post("/api/commands/update-user",
                     json={"user_id": user["user_id"], "name": "One", "expected_version": 1})
    assert first.status_code == 202 and first.json()["version"] == 2
    stale = cmd.post("/api/commands/update-user",
                     json={"user_id": user["user_id"], "name": "Two", "expected_version": 1})
    assert stale.status_code == 409
    body = stale.json()
    assert body["reason"] == "version_conflict"
    assert (body["expected_version"], body["actual_version"]) == (1, 2)
    assert "retry" in body["detail"].lower()


def test_the_same_idempotency_key_returns_the_first_answer_and_writes_once(cmd, evs) -> None:
    headers = {"Idempotency-Key": "test-key-" + str(time.time_ns())}
    body = {"name": "Once", "email": "once@example.com"}
    first = cmd.post("/api/commands/create-user", json=body, headers=headers)
    again = cmd.post("/api/commands/create-user", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    stream = evs.get(f"/api/events/streams/user-{first.json()['user_id']}").json()
    assert len(stream["events"]) == 1


def test_bad_input_gets_field_level_422_and_unknown_ids_404(cmd, qry, evs) -> None:
    r = cmd.post("/api/commands/create-user", json={"name": "", "email": 5})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"name", "email"}
    r = cmd.post("/api/commands/create-user", json={"name": "x", "email": "not-an-email"})
    assert r.status_code == 409 and r.json()["reason"] == "invalid_email"
    r = cmd.post("/api/commands/deactivate-user", json={"user_id": "nobody"})
    assert r.status_code == 404
    assert qry.get("/api/queries/users/nobody").status_code == 404
    assert evs.get("/api/events/streams/user-nobody").status_code == 404
    assert evs.post("/api/events/replay", json={"projections": ["nope"]}).status_code == 422


def test_the_log_pages_in_position_order_with_filters(cmd, evs) -> None:
    for i in range(5):
        create(cmd, f"Page {i}", f"page{i}@example.com")
    page1 = evs.get("/api/events", params={"limit": 3}).json()
    page2 = evs.get("/api/events", params={"limit": 3, "after": page1["next_after"]}).json()
    positions = [e["position"] for e in page1["events"] + page2["events"]]
    assert positions == sorted(positions) and len(set(positions)) == 6
    only = evs.get("/api/events", params={"type": "UserDeactivated", "limit": 1000}).json()
    assert all(e["event_type"] == "UserDeactivated" for e in only["events"])
    cat = evs.get("/api/events", params={"category": "user", "limit": 1000}).json()
    assert all(e["stream_id"].startswith("user-") for e in cat["events"])


def test_replay_rebuilds_the_same_views(cmd, qry, evs) -> None:
    last = create(cmd, "Before replay", "replay@example.com")
    wait_visible(qry, last["position"], "user-stats")
    wait_visible(qry, last["position"], "users")
    users_before = qry.get("/api/queries/users", params={"limit": 1000}).json()["users"]
    day = utc_day()
    stats_before = qry.get("/api/queries/user-stats").json()
    replay = evs.post("/api/events/replay").json()
    assert replay["status"] == "completed"
    assert replay["events_count"] >= last["position"]
    wait_visible(qry, last["position"])
    assert qry.get("/api/queries/users", params={"limit": 1000}).json()["users"] == users_before
    stats_after = qry.get("/api/queries/user-stats").json()
    same = ("total_users", "active_users") + (("new_users_today",) if utc_day() == day else ())
    assert {k: stats_after[k] for k in same} == {k: stats_before[k] for k in same}


def test_a_boolean_is_neither_a_quantity_nor_a_version(cmd) -> None:
    """`"quantity": true` was accepted as 1 (pydantic's lax int); order-service refused it."""
    r = cmd.post("/api/commands/place-order",
                 json={"user_id": "alice", "lines": [{"sku": "MOUSE-WL", "quantity": True}]})
    assert (r.status_code, [e["field"] for e in r.json()["errors"]]) == (
        422, ["lines.0.quantity"]), r.text
    r = cmd.post("/api/commands/update-user",
                 json={"user_id": "nobody", "name": "X", "expected_version": True})
    assert (r.status_code, [e["field"] for e in r.json()["errors"]]) == (
        422, ["expected_version"]), r.text
