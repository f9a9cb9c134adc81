"""Who routes where and who calls whom, from the service registry and the manifests."""

from __future__ import annotations

from typing import Any

from ecommerce.services.registry import SERVICES
from labkit.runtime.routes import COURSE_ROUTES


def routes() -> list[dict[str, Any]]:
    """The route table: path prefix -> service, as the HTTPRoute and the Ingress declare it."""
    rows = []
    for spec in SERVICES.values():
        for prefix in spec.routes:
            rows.append({"path": prefix, "service": spec.name,
                         "in_course": prefix in COURSE_ROUTES})
    return sorted(rows, key=lambda r: r["path"])


def manifest_routes() -> dict[str, dict[str, str]]:
    """{"httproute": {path: service}, "ingress": {path: service}} read from manifests/."""
    from labkit.runtime.manifests import load_all

    out: dict[str, dict[str, str]] = {"httproute": {}, "ingress": {}}
    for objs in load_all().values():
        for obj in objs:
            if obj.get("kind") == "HTTPRoute":
                for rule in obj.get("spec", {}).get("rules", []):
                    backends = [b["name"] for b in rule.get("backendRefs", [])]
                    for match in rule.get("matches", []):
                        path = match.get("path", {}).get("value")
                        if path and backends:
                            out["httproute"][path] = backends[0]
            elif obj.get("kind") == "Ingress":
                for rule in obj.get("spec", {}).get("rules", []):
                    for p in rule.get("http", {}).get("paths", []):
                        out["ingress"][p["path"]] = p["backend"]["service"]["name"]
    return out


def call_graph() -> list[tuple[str, str, str]]:
    """(caller, callee, kind) edges: HTTP calls between services and database access."""
    edges: list[tuple[str, str, str]] = []
    for spec in SERVICES.values():
        for callee in spec.calls:
            edges.append((spec.name, callee, "http"))
        if "events" in spec.stores:
            edges.append((spec.name, "event store", "db"))
        if "read" in spec.stores:
            edges.append((spec.name, "read model", "db"))
    for prefix in (*COURSE_ROUTES, "/api/inventory"):
        owner = next((s.name for s in SERVICES.values() if prefix in s.routes), None)
        if owner:
            edges.append(("gateway", owner, "route"))
    return edges
