"""The local gateway: one entry point on 127.0.0.1:8080, routed by `manifests/01-networking`.

In a cluster, a Gateway API implementation (or the course's ingress-nginx) sends
`http://<gateway>/api/users` to the `user-service` Service. In local mode this process does the
same for the lab's processes, so the course's curl lines run unchanged against
`http://localhost:8080`, with or without `-H 'Host: api.local'`:

- the rules are the HTTPRoute and Ingress of `manifests/01-networking`, read when it starts
  (`labkit.runtime.routes`): edit the YAML, restart the gateway (`labkit kill gateway; labkit up`),
  and the routing follows;
- each backend Service's address is `LABKIT_<SERVICE>_URL`, set by the local runtime;
- request and response bodies are streamed through, never held in memory;
- each request is logged as one JSON line: method, host, path, route matched, backend, upstream
  path, status, ms (`labkit logs gateway`); responses carry `X-Labkit-Route`,
  `X-Labkit-Backend` and `X-Labkit-Upstream` (the path the service received, percent-encoded
  where it is not ASCII) so a student can see the way a request took (`curl -i`);
- a path it will not forward (a control character: 400 `invalid_path`) or a URL it cannot send
  (414 `uri_too_long`, 400 `invalid_url`) gets a JSON error from the gateway itself.

Students add rules of their own (notebook 01's exercises) as HTTPRoute YAML files in
`<data dir>/routes/` (`labkit.runtime.routes.STUDENT_ROUTES_DIRNAME`): the gateway re-reads that
folder when a file in it changes, and serves those rules after the manifests' own.

`LABKIT_GATEWAY_REWRITE_TARGET=/` switches on the course's
`nginx.ingress.kubernetes.io/rewrite-target: /` for the Ingress rules (requests with
`Host: api.local`): every path reaches its service as `/`, which shows what that annotation
breaks. The annotation itself, if added to `manifests/01-networking/ingress.yaml`, has the same
effect.

    python -m labkit.runtime.gateway [--manifests DIR]   # what `labkit up` runs
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ecommerce import logs
from ecommerce.config import Settings
from labkit.runtime.routes import Route, load_routes, load_student_routes, match, student_routes_dir

NAME = "gateway"
REWRITE_ENV = "LABKIT_GATEWAY_REWRITE_TARGET"
#: Another manifests folder to route by (what a challenge "applied"; default: the repo's).
MANIFESTS_ENV = "LABKIT_GATEWAY_MANIFESTS"
#: Characters an upstream path keeps as they are in `X-Labkit-Upstream` (RFC 3986 pchar and /).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
#: Headers that belong to one connection and are never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                        "upgrade"})
#: The longest URL httpx sends (`httpx._urlparse.MAX_URL_LENGTH`): a longer one is a 414.
MAX_URL_LENGTH = 65536
#: How much of a refused path an error message shows.
SHOWN_PATH = 200
#: The gateway's own probes (the runtime waits on /readyz like on every service).
PROBES = ("/healthz", "/readyz")
TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=300.0, pool=10.0)


def _control_character(path: str) -> str | None:
    """The first control character (C0 or DEL) in a decoded path: no URL may carry one."""
    return next((c for c in path if c < " " or c == "\x7f"), None)


def _shown(path: str) -> str:
    """A path as a message shows it: percent-encoded, cut after SHOWN_PATH characters."""
    shown = quote(path, safe=_PATH_SAFE)
    return shown if len(shown) <= SHOWN_PATH else shown[:SHOWN_PATH] + "..."


def _invalid_path(path: str, bad: str) -> dict[str, Any]:
    return {"detail": f"the path {_shown(path)} holds a control character ({quote(bad)}), "
                      "which no URL may carry: remove it and send the request again",
            "reason": "invalid_path"}


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    import json

    data = json.dumps(body).encode()
    return status, [(b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode())], data


class Gateway:
    """An ASGI app that routes by the manifests' rules to the lab's services, streaming."""

    def __init__(self, routes: list[Route], backend_url: Callable[[str], str], *,
                 rewrite_target: str | None = None, steps: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 log: logging.Logger | None = None, student_dir: Path | None = None) -> None:
        self.manifest_routes = list(routes)
        self.routes = list(routes)
        self.student_dir = student_dir
        self.student_errors: list[str] = []
        self._student_seen: tuple[tuple[str, int, int], ...] = ()
        self.backend_url = backend_url
        self.rewrite_target = rewrite_target or None
        self.steps = steps or {}
        self.log = log or logging.getLogger(NAME)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def refresh_student_routes(self) -> None:
        """Re-read `student_dir` if a file in it changed: the manifests' rules, then the
        student's (a file that does not parse is skipped and named in `student_errors`)."""
        if self.student_dir is None:
            return
        files = sorted(self.student_dir.glob("*.yaml")) if self.student_dir.is_dir() else []
        seen = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        if seen == self._student_seen:
            return
        self._student_seen = seen
        extra, self.student_errors = load_student_routes(self.student_dir)
        self.routes = self.manifest_routes + extra
        logs.event(self.log, "student routes", routes=[f"{r.label} -> {r.backend}" for r in extra],
                   errors=self.student_errors)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, transport=self._transport,
                                             follow_redirects=False)
        return self._client

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: the lab's services have none
            return
        started = time.perf_counter()
        headers = [(k.decode("latin-1").lower(), v) for k, v in scope.get("headers") or []]
        host = next((v.decode("latin-1") for k, v in headers if k == "host"), "")
        path = scope.get("path") or "/"
        fields: dict[str, Any] = {"method": scope.get("method"), "host": host, "path": path}
        status = 500
        try:
            self.refresh_student_routes()
            if path in PROBES:
                status, hdrs, body = _json(200, {
                    "status": "ready" if path == "/readyz" else "ok", "service": NAME,
                    "routes": len(self.manifest_routes),
                    "student_routes": len(self.routes) - len(self.manifest_routes),
                    "student_errors": self.student_errors})
                await _answer(send, status, hdrs, body)
                return
            bad = _control_character(path)
            if bad is not None:  # answered here, never forwarded (a CR LF could split a header)
                status, hdrs, body = _json(400, _invalid_path(path, bad))
                await _answer(send, status, hdrs, body)
                return
            route = match(self.routes, host, path)
            if route is None:
                fields["route"] = None
                status, hdrs, body = _json(404, self._no_route(host, path))
                await _answer(send, status, hdrs, body)
                return
            fields.update(route=route.label, backend=route.backend)
            status = await self._proxy(scope, receive, send, headers, route, fields)
        finally:
            if path not in PROBES:
                fields.update(status=status, ms=round((time.perf_counter() - started) * 1000, 2))
                logs.event(self.log, "request", **fields)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _no_route(self, host: str, path: str) -> dict[str, Any]:
        by_source: dict[str, list[str]] = {}
        for r in self.routes:
            where = f"{r.kind} {r.name} (host {','.join(r.hosts)})" if r.hosts else \
                f"{r.kind} {r.name} (any host)"
            by_source.setdefault(where, []).append(r.path)
        known = "; ".join(f"{w}: {', '.join(p)}" for w, p in by_source.items())
        return {"detail": f"no route for {path} (host {host or '-'}) in manifests/01-networking. "
                          f"Routes: {known}",
                "reason": "no_route"}

    async def _proxy(self, scope: dict[str, Any], receive: Callable, send: Callable,
                     headers: list[tuple[str, bytes]], route: Route, fields: dict[str, Any]) -> int:
        path = scope.get("path") or "/"
        upstream_path = route.upstream_path(path, self.rewrite_target)
        query = scope.get("query_string") or b""
        try:
            base = self.backend_url(route.backend).rstrip("/")
        except Exception as exc:  # no address for this Service
            status, hdrs, body = _json(503, self._unavailable(route, str(exc)))
            await _answer(send, status, hdrs, body)
            return status
        # The path the client meant, encoded again: a decoded %3F, %23 or %25 sent as it is would
        # become a query, a fragment or another escape.
        quoted = quote(upstream_path, safe=_PATH_SAFE)
        url = base + quoted + ("?" + query.decode("latin-1") if query else "")
        fields["upstream"] = upstream_path
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:  # a client's URL httpx will not send: never a 500
            status, hdrs, body = _json(*self._unsendable(route, url, exc))
            await _answer(send, status, hdrs, body)
            return status
        forward = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        client_addr = scope.get("client") or ("", 0)
        host = next((v for k, v in headers if k == "host"), b"")
        prior = next((v for k, v in headers if k == "x-forwarded-for"), None)
        forward = [(k, v) for k, v in forward if not k.startswith("x-forwarded-")]
        forward += [("x-forwarded-for", (prior + b", " if prior else b"")
                     + str(client_addr[0]).encode()),
                    ("x-forwarded-host", host),
                    ("x-forwarded-proto", str(scope.get("scheme", "http")).encode())]
        has_body = any(k in ("content-length", "transfer-encoding") for k, _ in headers)
        # httpx.Request, not client.build_request: only the client's headers go on, none of
        # httpx's defaults (User-Agent, Accept-Encoding...).
        request = httpx.Request(scope["method"], target,
                                headers=[(k.encode("latin-1"), v) for k, v in forward],
                                content=_body(receive) if has_body else None,
                                extensions={"timeout": TIMEOUT.as_dict()})
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            status, hdrs, body = _json(503, self._unavailable(route, f"{type(exc).__name__}: {exc}"))
            await _answer(send, status, hdrs, body)
            return status
        try:
            out = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
            out += [(b"x-labkit-route", route.label.encode()),
                    (b"x-labkit-backend", route.backend.encode()),
                    (b"x-labkit-upstream", quoted.encode())]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
        return response.status_code

    @staticmethod
    def _unsendable(route: Route, url: str, exc: httpx.InvalidURL) -> tuple[int, dict[str, Any]]:
        if len(url) > MAX_URL_LENGTH:
            return 414, {"detail": f"the URL for {route.backend} would be {len(url)} characters, "
                                   f"over the {MAX_URL_LENGTH} the gateway can send: shorten "
                                   "the path or the query string",
                         "reason": "uri_too_long"}
        return 400, {"detail": f"the gateway cannot send this URL to {route.backend} "
                               f"({str(exc).rstrip('.')}): "
                               "fix the path or the query string",
                     "reason": "invalid_url"}

    def _unavailable(self, route: Route, why: str) -> dict[str, Any]:
        step = self.steps.get(route.backend)
        start = (f"`labkit up --step {step}` (or lab.up(step={step!r}))" if step
                 else "`labkit up`")
        return {"detail": f"{route.backend} (the backend of {route.label}) is not reachable: "
                          f"{why}. Start it with {start}; `labkit status` shows what runs.",
                "reason": "backend_unavailable", "backend": route.backend}


async def _body(receive: Callable) -> AsyncIterator[bytes]:
    """The request body as it arrives, chunk by chunk (never buffered whole)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _answer(send: Callable, status: int, headers: list[tuple[bytes, bytes]],
                  body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def service_steps(root: str | Path | None = None) -> dict[str, str]:
    """Service -> the manifests step that starts its pods (for "start it with ..." hints)."""
    from labkit.runtime.manifests import container_specs

    return {c.workload: c.step for c in container_specs(root=root).values()}


def create_app(settings: Settings | None = None, manifests: str | Path | None = None) -> Gateway:
    settings = settings or Settings.from_env()
    return Gateway(load_routes(manifests), settings.peer_url,
                   rewrite_target=os.environ.get(REWRITE_ENV) or None,
                   steps=service_steps(manifests), log=logging.getLogger(NAME),
                   student_dir=student_routes_dir(settings.data_dir))


def main(argv: list[str] | None = None) -> None:
    from ecommerce import quiet_server

    parser = argparse.ArgumentParser(prog="python -m labkit.runtime.gateway",
                                     description="The lab's local gateway (routes by manifests/).")
    parser.add_argument("--manifests", default=os.environ.get(MANIFESTS_ENV) or None,
                        help=f"manifests folder (default: ${MANIFESTS_ENV}, else the repo's "
                             "manifests/)")
    args = parser.parse_args(argv)
    log = logs.setup(NAME)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is ours
    settings = Settings.from_env()
    app = create_app(settings, args.manifests)
    rules = ", ".join(f"{r.label} -> {r.backend}" for r in app.routes)
    logs.event(log, "starting", host=settings.host, port=settings.port,
               rewrite_target=app.rewrite_target, manifests=args.manifests or "manifests/",
               routes=rules)
    quiet_server.run(app, host=settings.host, port=settings.port, log_config=None,
                     access_log=False, timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
