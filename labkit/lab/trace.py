"""One request's way through the gateway: the rule it matched, the Service it reached, the
path that Service saw, the answer and how long it took (notebook 01).

Locally the gateway says all of it (its `X-Labkit-*` headers and its log line). A cluster's
Gateway does not, so there the rule is the one `manifests/01-networking` gives for that host
and path (`labkit.runtime.routes.match`), which is what the Gateway applies.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ecommerce.waiting import WaitTimeout, wait_until
from labkit.runtime.routes import load_routes, match


def _log_line(lab: Any, method: str, path: str, status: int, timeout: float = 2.0
              ) -> dict[str, Any] | None:
    """The gateway's log line for this request (written right after the answer)."""
    def logged() -> dict[str, Any] | None:
        for line in reversed(lab.logs("gateway", tail=50).splitlines()):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry.get("msg"), entry.get("method"), entry.get("path"),
                    entry.get("status")) == ("request", method, path, status):
                return entry
        return None

    try:
        return wait_until(logged, timeout=timeout, interval=0.02, what="the gateway's log line")
    except WaitTimeout:
        return None


def trace(lab: Any, method: str, path: str, host: str | None = None,
          body: Any = None) -> dict[str, Any]:
    """Send one request through the gateway (`host`: e.g. the course's `api.local`) and say
    which way it went: request, host, route, backend, upstream path, status, ms, answer."""
    headers = {"Host": host} if host else {}
    started = time.perf_counter()
    response = lab.http("gateway").request(method, path, headers=headers, json=body)
    ms = (time.perf_counter() - started) * 1000
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text[:300]
    row: dict[str, Any] = {"request": f"{method} {path}", "host": host or "(none)",
                           "route": response.headers.get("x-labkit-route"),
                           "backend": response.headers.get("x-labkit-backend"),
                           "upstream": None, "status": response.status_code,
                           "ms": round(ms, 1), "answer": answer}
    bare = path.split("?", 1)[0]
    if row["route"] is not None:  # the local gateway: its own log line has the rest
        entry = _log_line(lab, method, bare, response.status_code)
        if entry is not None:
            row.update(upstream=entry.get("upstream"), ms=entry.get("ms"))
    else:  # a cluster's Gateway: the rule the manifests give for this host and path
        rule = match(load_routes(), host or "", bare)
        if rule is not None:
            row.update(route=f"{rule.label} (from the manifests)", backend=rule.backend,
                       upstream=rule.upstream_path(bare))
    return row
