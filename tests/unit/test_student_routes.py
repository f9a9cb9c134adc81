"""Students' routes (notebook 01's exercises): the gateway serves a rule a student writes into
the lab's data directory as soon as the file changes, after the manifests' own rules; a file
that does not parse is named, and the others still count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from labkit.runtime.gateway import Gateway
from labkit.runtime.routes import load_routes, load_student_routes
from tests.unit.test_gateway_app import Backend, _call, _json_response

SHOP = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop-stock}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop/stock}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /api/inventory}}
    backendRefs: [{name: inventory-service, port: 80}]
"""
REPORTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reports}
spec:
  hostnames: [reports.local]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /api/queries}}
    backendRefs: [{name: query-service, port: 80}]
"""


def _gateway(folder: Path, seen: list[str]) -> Gateway:
    def backend(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}{request.url.path}")
        return _json_response({"ok": True})

    return Gateway(load_routes(), lambda name: f"http://{name}.test", transport=Backend(backend),
                   student_dir=folder)


def test_a_route_written_while_the_gateway_runs_is_served_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "routes"
    seen: list[str] = []
    gw = _gateway(folder, seen)
    assert _call(gw, "GET", "/shop/stock/MOUSE-WL").status == 404  # no folder yet: no rule
    folder.mkdir()
    (folder / "shop-stock.yaml").write_text(SHOP)
    sent = _call(gw, "GET", "/shop/stock/MOUSE-WL")
    assert sent.status == 200 and seen[-1] == "inventory-service.test/api/inventory/MOUSE-WL"
    assert sent.headers["x-labkit-route"] == "HTTPRoute shop-stock /shop/stock"
    # the answer itself says the path the service got (lab.trace reads it, not the log)
    assert sent.headers["x-labkit-upstream"] == "/api/inventory/MOUSE-WL"
    sent = _call(gw, "GET", "/shop/stock/é 1")
    assert seen[-1] == "inventory-service.test/api/inventory/é 1"
    assert sent.headers["x-labkit-upstream"] == "/api/inventory/%C3%A9%201"
    # the manifests' rules still win for their own paths, and the probe counts both kinds
    assert _call(gw, "GET", "/api/users").headers["x-labkit-backend"] == "user-service"
    ready = json.loads(_call(gw, "GET", "/readyz").body)
    assert ready["routes"] == len(load_routes()) and ready["student_routes"] == 1


def test_a_host_rule_takes_its_host_and_leaves_the_others_alone(tmp_path: Path) -> None:
    folder = tmp_path / "routes"
    folder.mkdir()
    (folder / "reports.yaml").write_text(REPORTS)
    seen: list[str] = []
    gw = _gateway(folder, seen)
    assert _call(gw, "GET", "/user-stats", host="reports.local").status == 200
    assert seen[-1] == "query-service.test/api/queries/user-stats"
    assert _call(gw, "GET", "/user-stats", host="localhost").status == 404


def test_an_edited_or_deleted_file_changes_the_routing(tmp_path: Path) -> None:
    folder = tmp_path / "routes"
    folder.mkdir()
    path = folder / "shop-stock.yaml"
    path.write_text(SHOP)
    seen: list[str] = []
    gw = _gateway(folder, seen)
    assert _call(gw, "GET", "/shop/stock").status == 200
    path.write_text(SHOP.replace("inventory-service", "order-service").replace(
        "/api/inventory", "/api/orders"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    _call(gw, "GET", "/shop/stock")
    assert seen[-1] == "order-service.test/api/orders"
    path.unlink()
    assert _call(gw, "GET", "/shop/stock").status == 404


def test_a_broken_file_is_named_and_the_good_ones_still_count(tmp_path: Path) -> None:
    (tmp_path / "a-broken.yaml").write_text("kind: HTTPRoute\nspec: [not, a, mapping")
    (tmp_path / "b-empty.yaml").write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "c-shop.yaml").write_text(SHOP)
    routes, errors = load_student_routes(tmp_path)
    assert [r.name for r in routes] == ["shop-stock"]
    assert errors[0].startswith("a-broken.yaml: ") and "no HTTPRoute" in errors[1]
