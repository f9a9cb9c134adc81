"""The local gateway and the paths clients send, over real HTTP to a real order-service: a path
it cannot forward gets a JSON error it answers itself (never a plain-text 500), and any other
reaches the service as the client sent it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labkit.runtime.local import LocalRuntime
from tests.integration.labs import lab_settings


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    data_dir: Path = tmp_path_factory.mktemp("gateway-paths")
    runtime = LocalRuntime(lab_settings(data_dir), ["order-service", "gateway"], gateway_port=0)
    try:
        runtime.up(progress=False)
        yield runtime
    finally:
        runtime.down()


@pytest.fixture(scope="module")
def gateway(lab: LocalRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab.url("gateway"), timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ["/api/orders/%00", "/api/orders/%0d%0aX", "/api/orders/%7f",
                                  "/api/orders/a%09b", "/api/orders/%1B[31m", "/shop/%00"])
def test_a_control_character_in_the_path_is_a_json_400_never_forwarded(
        gateway: httpx.Client, path: str) -> None:
    r = gateway.get(path)
    assert (r.status_code, r.headers["content-type"]) == (400, "application/json"), r.text
    body = r.json()
    assert body["reason"] == "invalid_path"
    assert "control character" in body["detail"] and "remove it" in body["detail"]
    assert body["detail"].count(". ") == 0 and "\r" not in body["detail"]  # one sentence
    assert "x-labkit-backend" not in r.headers  # the gateway's own answer: nothing forwarded


def test_a_url_too_long_to_forward_is_a_json_414(gateway: httpx.Client) -> None:
    # The server takes a request line this long; with the backend's address in front, the URL
    # is over the 65536 characters httpx sends.
    r = gateway.get("/api/orders/" + "a" * 65_510)
    assert (r.status_code, r.headers["content-type"]) == (414, "application/json"), r.text[:300]
    assert r.json()["reason"] == "uri_too_long" and "shorten" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/api/orders/a%20b", "/api/orders/%C3%A9", "/api/orders/a%3Fb",
                                  "/api/orders/a%23b", "/api/orders/%2541", "/api/orders/100%25",
                                  "/api/orders/%ZZ"])
def test_the_service_gets_the_path_the_client_sent(lab: LocalRuntime, gateway: httpx.Client,
                                                    path: str) -> None:
    """Through the gateway, the same answer as straight from order-service: an escaped ?, # or %
    stays part of the order id (it was forwarded decoded: a query, a cut, another escape)."""
    with httpx.Client(base_url=lab.url("order-service"), timeout=30) as direct:
        expected = direct.get(path)
    r = gateway.get(path)
    assert (r.status_code, r.json()) == (expected.status_code, expected.json())
    assert r.headers["x-labkit-backend"] == "order-service"
