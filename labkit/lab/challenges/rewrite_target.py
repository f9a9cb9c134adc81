"""`rewrite-target`: the course's own Ingress bug, applied to the running gateway.

The course's Ingress carried `nginx.ingress.kubernetes.io/rewrite-target: /`. Without capture
groups, ingress-nginx then sends *every* path to its Service as `/`: `GET /api/users` reaches
user-service as `GET /`, which has no such endpoint. The lab's manifests leave it out; this
challenge "applies" a copy of them with the annotation put back (the local gateway routes by
that copy, like a cluster by what was last applied), so requests with `Host: api.local` (the
Ingress rules) break while those without a host (the HTTPRoute) keep working.

Fix: correct the applied Ingress (the file the start message names) and restart the gateway
(`labkit restart gateway`), or roll the gateway back to the repository's manifests
(`labkit rollback gateway`). Check: requests with `Host: api.local` through the Ingress rules
reach each Service with their own path and get its answer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ecommerce.config import REPO_DIR
from labkit.lab.challenges.base import Challenge, CheckResult, require_local
from labkit.runtime.gateway import MANIFESTS_ENV
from labkit.runtime.routes import REWRITE_ANNOTATION

HOST = "api.local"
#: Paths the mobile app calls (GET, every one a list endpoint that answers 200 when healthy).
PROBES = ("/api/users", "/api/orders", "/api/inventory", "/api/queries/users", "/api/events")
HEADER = """\
# The Ingress as applied to the lab on Friday ("as in the course handout").
"""


def applied_dir(lab: Any) -> Path:
    return Path(lab.settings.data_dir) / "challenges" / "rewrite-target" / "manifests"


def break_ingress(text: str) -> str:
    """The repo's ingress.yaml with the course's annotation added (and its comments dropped)."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    marker = "  namespace: ecommerce-microservices\n"
    if marker not in body:
        raise ValueError("ingress.yaml has no `namespace: ecommerce-microservices` line")
    annotation = f"  annotations:\n    {REWRITE_ANNOTATION}: /\n"
    return HEADER + body.replace(marker, marker + annotation, 1).lstrip("\n") + "\n"


class RewriteTarget(Challenge):
    name = "rewrite-target"
    title = "The mobile app gets 404 for everything (Host: api.local)"
    topic = "01-networking"
    story = (
        "Since Friday's deploy the mobile app, which calls the lab as http://api.local/... "
        "(`curl -H 'Host: api.local' {gateway}/api/users`), gets 404 on every call. The web "
        "app (no Host header) works fine, and every service says it is healthy. What was "
        "applied on Friday is in {file} (the gateway routes by it). Find out what is wrong "
        "with it and fix it."
    )
    hints = (
        "Compare one request with and without the host: lab.trace('GET', '/api/users') and "
        "lab.trace('GET', '/api/users', host='api.local'). Which rule did each match, and "
        "which path did the service receive (`upstream`)?",
        "`labkit logs gateway` shows the same per request: route, backend, upstream path, "
        "status. The Ingress rules send every path to the service as '/': what in the applied "
        "Ingress changes the path?",
        "Look at the metadata of the Ingress in the applied file: the course's "
        "`nginx.ingress.kubernetes.io/rewrite-target: /` annotation, without capture groups, "
        "rewrites the whole path to '/'.",
        "Delete the two annotation lines (`annotations:` and the rewrite-target) from the "
        "applied ingress.yaml, then `labkit restart gateway` (or lab.restart('gateway')). "
        "`labkit rollback gateway` (back to the repository's manifests) works too.",
    )
    tools = ("lab.trace", "labkit logs gateway", "lab.routes()", "the applied ingress.yaml")

    def start(self, lab: Any) -> dict[str, Any]:
        require_local(lab, self)
        target = applied_dir(lab)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(REPO_DIR / "manifests", target)
        ingress = target / "01-networking" / "ingress.yaml"
        ingress.write_text(break_ingress(ingress.read_text()))
        lab.close()
        lab.runtime.set_override("gateway", {MANIFESTS_ENV: str(target)},
                                 f"routes from {target} (applied on Friday)")
        lab.runtime.restart_one("gateway")
        return {"file": str(ingress), "manifests": str(target), "gateway": lab.url("gateway")}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        from labkit.lab.trace import trace

        bad: list[str] = []
        for path in PROBES:
            try:
                row = trace(lab, "GET", path, HOST)
            except Exception as exc:
                bad.append(f"GET {path} (Host {HOST}): no answer from the gateway ({exc})")
                continue
            route = row.get("route") or ""
            if not route.startswith("Ingress"):
                bad.append(f"GET {path} (Host {HOST}) matched {route or 'no rule'}, not the "
                           "Ingress rules (the mobile app's host must keep its Ingress)")
            elif row["status"] != 200 or (row.get("upstream") not in (None, path)):
                bad.append(f"GET {path} (Host {HOST}) reached {row.get('backend')} as "
                           f"{row.get('upstream')!r} and got {row['status']}")
        if bad:
            return CheckResult(False, f"{len(bad)} of {len(PROBES)} mobile-app requests fail",
                               f"every GET with Host {HOST} reaches its service with its own "
                               "path through the Ingress rules and gets 200", tuple(bad))
        return CheckResult(True, f"all {len(PROBES)} requests with Host {HOST} reach their "
                                 "service with their own path through the Ingress rules (200)")

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        lab.close()
        lab.runtime.clear_override("gateway")
        lab.runtime.restart_one("gateway")
        return "rolled the gateway back to the repository's manifests (no rewrite-target)"
