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
