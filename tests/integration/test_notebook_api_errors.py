"""What a student reads when a notebook call goes wrong on a real local lab: the service's own
reasons (each field and rule of a 422, the names a service serves), the id as given, and
which service to start when one is down (never a bare httpx traceback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.lab import Lab, LabError
from labkit.lab.scenarios import ScenarioError
from labkit.ops.admin_client import AdminError
from tests.integration.labs import full_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with full_lab(tmp_path_factory.mktemp("api-errors") / "data") as lab:
        yield lab


def test_a_refused_request_names_each_field_and_the_rule_it_broke(lab: Lab) -> None:
    with pytest.raises(LabError, match=r"-> 422: invalid request: name: Field required; "
                                       r"email: Field required"):
        lab.command("create-user")
    with pytest.raises(LabError, match=r"-> 422: invalid request: query.limit: Input should be "
                                       r"greater than or equal to"):
        lab.query("users", limit=-1)
    with pytest.raises(LabError, match=r"-> 422: invalid request: query.after: "):
        lab.events(after=-1)
    with pytest.raises(AdminError, match=r"\(422\): invalid request: amount: "):
        lab.admin.fund("alice", -100)
    with pytest.raises(ScenarioError, match=r"create user 김철수: HTTP 422 invalid request: "
                                            r"user_id: String should match pattern"):
        lab.fire("happy", user="김철수")


def test_an_unknown_query_or_command_says_which_names_exist(lab: Lab) -> None:
    with pytest.raises(LabError, match=r"^query-service has no query 'nope': use one of ") as q:
        lab.query("nope")
    for name in ("checkpoints", "user-stats", "users", "views/{name}"):
        assert name in str(q.value).split(": use one of ")[1].split(", ")
    with pytest.raises(LabError, match=r"^command-service has no command 'nope': use one of ") as c:
        lab.command("nope")
    assert "create-user" in str(c.value) and "place-order" in str(c.value)
    with pytest.raises(LabError, match=r"-> 404: user 'nobody' does not exist"):
        lab.query("users/nobody")  # an unknown id keeps the service's own sentence


def test_an_id_reaches_the_service_as_given(lab: Lab) -> None:
    for bad in ("", "a/b", "a?x=1"):  # refused before it is sent (test_lab_refusals)
        with pytest.raises(AdminError, match=r"^account_id is an account's id like"):
            lab.admin.fund(bad, 100)
    # A SKU is sent percent-encoded: the service sees "a?x=1", not a query string.
    with pytest.raises(AdminError, match=r"/admin/inventory/a%3Fx%3D1/restock \(\d+\)"):
        lab.admin.restock("a?x=1", 1)
    lab.command("create-user", user_id="hash", name="Hash", email="hash@example.com")
    assert lab.stream("user-hash")
    with pytest.raises(LabError, match=r"-> 404: stream 'user-hash#x' does not exist"):
        lab.stream("user-hash#x")  # it read stream "user-hash"


def test_a_call_to_a_service_that_is_down_says_which_and_how_to_start_it(lab: Lab) -> None:
    unreachable = (r"^{} is not reachable at http://127\.0\.0\.1:\d+{} \(\w+Error\); is the "
                   r"service running\? \(lab\.status\(\)")
    lab.kill("query-service")
    lab.kill("event-store-api")
    try:
        with pytest.raises(LabError, match=unreachable.format("query-service",
                                                              "/api/queries/users")):
            lab.query("users")
        with pytest.raises(LabError, match=unreachable.format("query-service",
                                                              "/api/queries/checkpoints")):
            lab.checkpoints()
        with pytest.raises(LabError, match=unreachable.format("event-store-api", "/api/events")):
            lab.events()
        with pytest.raises(LabError, match=unreachable.format("event-store-api",
                                                              "/api/events/replay")):
            lab.replay()
        with pytest.raises(LabError, match=unreachable.format("event-store-api",
                                                              "/api/events/streams/user-x")):
            lab.user_at("x")
    finally:
        lab.up(progress=False)
    assert "users" in lab.query("users")
