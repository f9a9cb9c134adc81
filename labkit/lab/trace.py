"""One request's way through the gateway: the rule it matched, the Service it reached, the
path that Service saw, the answer and how long it took (notebook 01).

Locally the gateway says all of it in its answer's `X-Labkit-*` headers (not its log: under
load the log line of this request may come after the previous request's). A cluster's
Gateway does not, so there the rule is the one `manifests/01-networking` gives for that host
and path (`labkit.runtime.routes.match`), which is what the Gateway applies.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import httpx

from labkit.lab import LabError
from labkit.ops.unreachable import unreachable
from labkit.runtime.routes import load_routes, match


class TraceError(ValueError):
    """A request `trace` will not send; the message says what to give instead."""


def _checked(method: object, path: object, host: object) -> tuple[str, str | None]:
    """The method (upper case) and the Host header (IDNA for a non-ASCII name), or TraceError
    before anything is sent: the gateway's address comes from the lab, so `path` is a path."""
    if not isinstance(method, str) or not method.isalpha():
        raise TraceError(f"method is an HTTP method such as 'GET' or 'POST', not {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise TraceError(f"path is the path only, starting with '/' (e.g. '/api/users'), not "
                         f"{path!r}: the lab knows the gateway's address, and the host name "
                         "goes in host=")
    if host is None or host == "":
        return method.upper(), None
    if not isinstance(host, str):
        raise TraceError(f"host is a host name such as 'api.local', not {host!r}")
    try:
        return method.upper(), host.encode("idna").decode("ascii")
    except UnicodeError:
        raise TraceError(f"host {host!r} is not a valid host name") from None


def trace(lab: Any, method: str, path: str, host: str | None = None,
          body: Any = None) -> dict[str, Any]:
    """Send one request through the gateway (`host`: e.g. the course's `api.local`) and say
    which way it went: request, host, route, backend, upstream path, status, ms, answer."""
    method, host = _checked(method, path, host)
    headers = {"Host": host} if host else {}
    started = time.perf_counter()
    client = lab.http("gateway")
    try:
        response = client.request(method, path, headers=headers, json=body)
    except httpx.TransportError as exc:
        raise LabError(unreachable("gateway", str(client.base_url.join(path)), exc)) from None
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
    upstream = response.headers.get("x-labkit-upstream")
    if row["route"] is not None:  # the local gateway: it says where this very request went
        row["upstream"] = unquote(upstream) if upstream is not None else None
    else:  # a cluster's Gateway, or the local gateway's own answer (a 503: no backend yet):
        # the rule the manifests give for this host and path
        rule = match(load_routes(), host or "", bare)
        if rule is not None:
            row.update(route=f"{rule.label} (from the manifests)", backend=rule.backend,
                       upstream=rule.upstream_path(bare))
    return row
