"""The routing rules come from manifests/01-networking, and match as a cluster would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from labkit.runtime.manifests import MANIFESTS_DIR, load_step
from labkit.runtime.routes import (
    load_routes,
    match,
    normalise_host,
    path_prefix_matches,
    routes_from,
)


def _declared() -> tuple[dict[str, str], dict[str, str], set[str]]:
    """What the YAML itself says, read without labkit's route code."""
    httproute, ingress, hosts = {}, {}, set()
    for obj in load_step("01-networking"):
        if obj["kind"] == "HTTPRoute":
            for rule in obj["spec"]["rules"]:
                for m in rule["matches"]:
                    httproute[m["path"]["value"]] = rule["backendRefs"][0]["name"]
        elif obj["kind"] == "Ingress":
            for rule in obj["spec"]["rules"]:
                hosts.add(rule["host"])
                for p in rule["http"]["paths"]:
                    ingress[p["path"]] = p["backend"]["service"]["name"]
    return httproute, ingress, hosts


def test_every_rule_of_the_manifests_is_loaded() -> None:
    httproute, ingress, hosts = _declared()
    routes = load_routes()
    assert {r.path: r.backend for r in routes if r.kind == "HTTPRoute"} == httproute
    assert {r.path: r.backend for r in routes if r.kind == "Ingress"} == ingress
    assert {h for r in routes if r.kind == "Ingress" for h in r.hosts} == hosts == {"api.local"}
    assert all(r.port == 80 for r in routes)


@pytest.mark.parametrize(("host", "path", "kind", "backend"), [
    ("localhost:8080", "/api/users", "HTTPRoute", "user-service"),
    ("127.0.0.1:8080", "/api/queries/users", "HTTPRoute", "query-service"),
    ("api.local", "/api/users", "Ingress", "user-service"),
    ("API.LOCAL:8080", "/api/commands/create-user", "Ingress", "command-service"),
    ("", "/api/events/replay", "HTTPRoute", "event-store-api"),
])
def test_host_api_local_takes_the_ingress_any_other_host_the_httproute(host, path, kind,
                                                                       backend) -> None:
    route = match(load_routes(), host, path)
    assert route is not None and (route.kind, route.backend) == (kind, backend)


def test_prefixes_match_whole_path_elements_only() -> None:
    assert path_prefix_matches("/api/users", "/api/users")
    assert path_prefix_matches("/api/users", "/api/users/")
    assert path_prefix_matches("/api/users", "/api/users/7")
    assert not path_prefix_matches("/api/users", "/api/usersX")
    assert path_prefix_matches("/", "/anything")
    assert match(load_routes(), "localhost", "/api/usersX") is None
    assert match(load_routes(), "localhost", "/healthz") is None


def test_normalise_host() -> None:
    assert normalise_host("API.local:8080") == "api.local"
    assert normalise_host("[::1]:8080") == "::1"
    assert normalise_host(None) == ""


def _obj(kind: str, spec: dict, annotations: dict | None = None) -> dict:
    meta = {"name": "r", "annotations": annotations or {}}
    api = "gateway.networking.k8s.io/v1" if kind == "HTTPRoute" else "networking.k8s.io/v1"
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def test_precedence_exact_then_longest_prefix_then_host_specificity() -> None:
    routes = routes_from([
        _obj("HTTPRoute", {"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
             "backendRefs": [{"name": "a", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api/users"}}],
             "backendRefs": [{"name": "b", "port": 80}]},
            {"matches": [{"path": {"type": "Exact", "value": "/api/users/me"}}],
             "backendRefs": [{"name": "c", "port": 80}]},
        ]}),
        _obj("HTTPRoute", {"hostnames": ["*.example.com"], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "wild", "port": 80}]}]}),
    ])
    assert match(routes, "x", "/api/orders").backend == "a"
    assert match(routes, "x", "/api/users/7").backend == "b"
    assert match(routes, "x", "/api/users/me").backend == "c"
    assert match(routes, "shop.example.com", "/api/users/7").backend == "wild"
    assert match(routes, "example.com", "/api/users/7").backend == "b"  # *.x does not match x


def test_rewrites_ingress_annotation_and_httproute_filters() -> None:
    ingress, prefix = routes_from([
        _obj("Ingress", {"rules": [{"host": "api.local", "http": {"paths": [
            {"path": "/api/users", "pathType": "Prefix",
             "backend": {"service": {"name": "user-service", "port": {"number": 80}}}}]}}]},
             {"nginx.ingress.kubernetes.io/rewrite-target": "/"}),
        _obj("HTTPRoute", {"rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/v2/users"}}],
            "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
                "type": "ReplacePrefixMatch", "replacePrefixMatch": "/api/users"}}}],
            "backendRefs": [{"name": "user-service", "port": 80}]}]}),
    ])
    assert ingress.upstream_path("/api/users/7") == "/"  # the course's annotation: path lost
    assert prefix.upstream_path("/v2/users/7") == "/api/users/7"
    plain = match(load_routes(), "api.local", "/api/users/7")
    assert plain.upstream_path("/api/users/7") == "/api/users/7"
    assert plain.upstream_path("/api/users/7", force_rewrite="/") == "/"


def test_routing_follows_an_edited_manifest(tmp_path: Path) -> None:
    """Not a copy in code: add a rule to a copy of the step folder and it routes."""
    root = tmp_path / "manifests"
    shutil.copytree(MANIFESTS_DIR / "01-networking", root / "01-networking")
    path = root / "01-networking" / "gateway.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    route["spec"]["rules"].append({"matches": [{"path": {"type": "PathPrefix", "value": "/shop"}}],
                                   "backendRefs": [{"name": "order-service", "port": 80}]})
    path.write_text(yaml.safe_dump_all(docs))
    assert match(load_routes(), "localhost", "/shop/1") is None
    assert match(load_routes(root), "localhost", "/shop/1").backend == "order-service"
