"""`lab.trace` in cluster mode: the Gateway does not name its rule; the manifests do."""

from __future__ import annotations

import httpx

from labkit.lab.trace import trace


class ClusterLab:
    mode = "cluster"

    def http(self, name: str) -> httpx.Client:
        assert name == "gateway"

        def answer(request: httpx.Request) -> httpx.Response:
            assert request.headers["host"] == "api.local"
            return httpx.Response(200, json={"users": [], "total": 0})

        return httpx.Client(base_url="http://203.0.113.7", transport=httpx.MockTransport(answer))


def test_in_cluster_mode_the_rule_comes_from_the_manifests() -> None:
    way = trace(ClusterLab(), "GET", "/api/users/alice", host="api.local")
    assert way["route"] == "Ingress ecommerce-ingress api.local/api/users (from the manifests)"
    assert (way["backend"], way["upstream"], way["status"]) == ("user-service",
                                                                "/api/users/alice", 200)
    assert way["answer"] == {"users": [], "total": 0}


def test_a_gateway_that_does_not_answer_says_so_and_how_to_start_it() -> None:
    import pytest

    from labkit.lab import LabError

    class DownLab:
        mode = "local"

        def http(self, name: str) -> httpx.Client:
            def refuse(request: httpx.Request) -> httpx.Response:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

            return httpx.Client(base_url="http://127.0.0.1:8080",
                                transport=httpx.MockTransport(refuse))

    with pytest.raises(LabError, match=r"^gateway is not reachable at http://127\.0\.0\.1:8080"
                                       r"/api/users \(ConnectError\); is the service running"):
        trace(DownLab(), "GET", "/api/users")


def test_the_local_gateways_own_503_still_shows_the_rule_of_the_manifests() -> None:
    """Notebook 01's first trace, before the services start: the gateway answers 503 itself
    (no X-Labkit-Route), and the row still names the Ingress rule and its backend."""
    class LocalLab:
        mode = "local"

        def http(self, name: str) -> httpx.Client:
            def answer(request: httpx.Request) -> httpx.Response:
                return httpx.Response(503, json={"reason": "backend_unavailable"})

            return httpx.Client(base_url="http://127.0.0.1:8080",
                                transport=httpx.MockTransport(answer))

    way = trace(LocalLab(), "GET", "/api/users", host="api.local")
    assert way["route"] == "Ingress ecommerce-ingress api.local/api/users (from the manifests)"
    assert (way["backend"], way["upstream"], way["status"]) == ("user-service", "/api/users", 503)
