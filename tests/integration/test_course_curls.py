"""The course's curl lines, unchanged, against the local gateway: the answers docs/api.md gives.

Real processes, real curl (the course's own flags), the gateway on a free port (never 8080).
Every Ingress request runs twice: as the course sends it (`-H "Host: api.local"`: the Ingress
rule) and without the header (the HTTPRoute rule); both must give the documented answer.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.lab import Lab
from tests.integration.labs import lab_settings
from tests.waiting import wait_until

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="needs the curl binary (the course's tool)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(lab_settings(tmp_path_factory.mktemp("course") / "data"), gateway_port=0)
    try:
        lab.up(progress=False)
        yield lab
    finally:
        lab.reset()


def curl(course_line: str, gateway: str, host_header: bool | None = None) -> tuple[int, dict, Any]:
    """Run a course curl line with its in-cluster address replaced by the gateway's.

    `host_header`: True adds the course's `-H "Host: api.local"` (when the line lacks it), False
    removes it, None keeps the line as it is. Returns (status, headers, JSON body).
    """
    args = shlex.split(course_line)
    assert args[0] == "curl"
    if host_header is False and "-H" in args:
        i = args.index("-H")
        if args[i + 1].lower().startswith("host:"):
            del args[i:i + 2]
    if host_header and not any(a.lower().startswith("host:") for a in args):
        args[1:1] = ["-H", "Host: api.local"]
    url = next(a for a in args if a.startswith("http://"))
    path = "/" + url.split("/", 3)[3]
    args[args.index(url)] = gateway + path
    done = subprocess.run([CURL, "-D", "-", *args[1:]], capture_output=True, timeout=60,
                          check=True)
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head.splitlines()[1:])}
    return status, headers, json.loads(body)


# The course's lines (Week 4 Day 1 Hands-on 1), in-cluster addresses and all.
CREATE_USER = ("curl -s -X POST http://command-service.ecommerce-microservices.svc.cluster.local"
               "/api/commands/create-user")
QUERY_USERS = "curl -s http://query-service.ecommerce-microservices.svc.cluster.local/api/queries/users"
EVENTS = "curl -s http://event-store-api.ecommerce-microservices.svc.cluster.local/api/events"
REPLAY = "curl -s -X POST http://event-store-api.ecommerce-microservices.svc.cluster.local/api/events/replay"
INGRESS_USERS = 'curl -s -H "Host: api.local" http://nginx-ingress-controller/api/users'
# The paths of the course's nginx stand-ins (its ConfigMaps' `location` blocks).
UPDATE_USER = "curl -s -X POST http://command-service/api/commands/update-user"
USER_STATS = "curl -s http://query-service/api/queries/user-stats"
ORDERS = "curl -s http://order-service/api/orders"
PAYMENTS = "curl -s http://payment-service/api/payments"


def _teaching_422(path: str) -> Callable[[int, dict], None]:
    def check(status: int, body: dict) -> None:
        assert status == 422 and body["reason"] == "validation_error", body
        assert "needs a JSON body" in body["detail"]
        assert "-H 'Content-Type: application/json'" in body["try"]
        assert path in body["try"] and isinstance(body["example"], dict) and body["example"]
    return check


def _view(source: str, key: str) -> Callable[[int, dict], None]:
    def check(status: int, body: dict) -> None:
        assert (status, body["source"]) == (200, source) and key in body, body
    return check


def _listing(key: str) -> Callable[[int, dict], None]:
    def check(status: int, body: dict) -> None:
        assert status == 200 and isinstance(body[key], list), body
    return check


def _events(status: int, body: dict) -> None:
    assert status == 200 and {"events", "next_after", "last_position"} <= set(body), body
    assert all("stream_id" in e and "recorded_at" in e for e in body["events"])


def _replay(status: int, body: dict) -> None:
    assert (status, body["status"]) == (200, "completed") and body["events_count"] >= 0, body


CASES: dict[str, tuple[str, Callable[[int, dict], None]]] = {
    "create-user": (CREATE_USER, _teaching_422("/api/commands/create-user")),
    "update-user": (UPDATE_USER, _teaching_422("/api/commands/update-user")),
    "queries/users": (QUERY_USERS, _view("materialized_view", "users")),
    "user-stats": (USER_STATS, _view("aggregated_view", "total_users")),
    "events": (EVENTS, _events),
    "replay": (REPLAY, _replay),
    "users": (INGRESS_USERS, _listing("users")),
    "orders": (ORDERS, _listing("orders")),
    "payments": (PAYMENTS, _listing("payments")),
}


@pytest.mark.parametrize("with_host", [True, False], ids=["Host: api.local", "no Host header"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_course_curl_lines_get_the_documented_answer(lab: Lab, case: str,
                                                         with_host: bool) -> None:
    line, check = CASES[case]
    status, headers, body = curl(line, lab.url("gateway"), host_header=with_host)
    check(status, body)
    kind = "Ingress" if with_host else "HTTPRoute"
    assert headers["x-labkit-route"].startswith(kind), headers
    wait_until(lambda: any(f'"route": "{headers["x-labkit-route"]}"' in ln
                           and f'"status": {status}' in ln
                           for ln in lab.logs("gateway", tail=50).splitlines()),
               what="the gateway's log line for the request (route, status)")


def test_the_422s_curl_line_is_one_that_works(lab: Lab) -> None:
    status, _, body = curl(CREATE_USER, lab.url("gateway"))
    assert status == 422
    done = subprocess.run(shlex.split(body["try"]), capture_output=True, text=True, timeout=60,
                          check=True)
    accepted = json.loads(done.stdout)
    assert accepted["status"] == "accepted" and accepted["type"] == "CreateUserCommand"


def test_a_form_body_is_told_to_send_json(lab: Lab) -> None:
    line = CREATE_USER + " -d '{\"name\": \"Kim\", \"email\": \"kim@example.com\"}'"
    status, _, body = curl(line, lab.url("gateway"))
    assert status == 422 and "not sent as JSON" in body["detail"]
    assert "application/x-www-form-urlencoded" in body["detail"]


def test_place_order_through_the_gateway_starts_a_saga(lab: Lab) -> None:
    from labkit.lab.scenarios import ALICE, ensure_customer

    ensure_customer(lab, ALICE)
    line = ("curl -s -X POST http://localhost:8080/api/commands/place-order -H 'Content-Type: "
            "application/json' -d '{\"user_id\": \"alice\", \"lines\": [{\"sku\": \"MOUSE-WL\", "
            "\"quantity\": 1}]}'")
    status, _, body = curl(line, lab.url("gateway"))
    assert status == 202 and body["type"] == "PlaceOrderCommand"
    assert lab.saga.wait(body["saga_id"], timeout=30)["status"] == "completed"


def test_rewrite_target_breaks_the_ingress_paths_and_only_them(lab: Lab) -> None:
    url = lab.url("gateway")
    try:
        row = lab.rewrite_target("/").iloc[0]
        assert row["status"] == "ready" and lab.url("gateway") == url  # same port
        status, headers, _ = curl(INGRESS_USERS, url)
        assert status == 404 and headers["x-labkit-backend"] == "user-service"
        wait_until(lambda: '"upstream": "/"' in lab.logs("gateway", tail=5),
                   what="the gateway's log line with the rewritten path")
        status, _, _ = curl(INGRESS_USERS, url, host_header=False)
        assert status == 200  # the HTTPRoute has no such annotation
    finally:
        lab.rewrite_target(None)
    assert curl(INGRESS_USERS, url)[0] == 200


def test_labkit_env_exports_urls_a_shell_can_use(lab: Lab) -> None:
    env = {**os.environ, "LABKIT_DATA_DIR": str(lab.settings.data_dir)}
    script = (f'eval "$({shlex.quote(sys.executable)} -m labkit.cli env)" && '
              f'{CURL} -s "$LABKIT_GATEWAY_URL/api/queries/user-stats" && echo && '
              f'{CURL} -s "$LABKIT_QUERY_SERVICE_URL/healthz"')
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    stats, health = (json.loads(x) for x in done.stdout.strip().splitlines())
    assert stats["source"] == "aggregated_view" and health["service"] == "query-service"
    printed = subprocess.run([sys.executable, "-m", "labkit.cli", "env"], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"export LABKIT_GATEWAY_URL='{lab.url('gateway')}'" in printed.splitlines()
    ps = subprocess.run([sys.executable, "-m", "labkit.cli", "env", "--powershell"], env=env,
                        capture_output=True, text=True, timeout=60, check=True).stdout
    assert f'$env:LABKIT_GATEWAY_URL = "{lab.url("gateway")}"' in ps.splitlines()


def test_env_with_nothing_running_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "LABKIT_DATA_DIR": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "labkit.cli", "env"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "labkit up" in done.stderr


def test_trace_shows_one_requests_way_through_the_gateway(lab: Lab) -> None:
    way = lab.trace("GET", "/api/users?limit=1", host="api.local")
    assert way["route"] == "Ingress ecommerce-ingress api.local/api/users"
    assert (way["backend"], way["upstream"], way["status"]) == ("user-service", "/api/users", 200)
    assert isinstance(way["ms"], float) and "users" in way["answer"]
    plain = lab.trace("POST", "/api/commands/create-user")
    assert plain["route"] == "HTTPRoute ecommerce-routes /api/commands"
    assert plain["status"] == 422 and "try" in plain["answer"]
