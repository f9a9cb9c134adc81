"""The gateway app in-process: bodies stream both ways, errors say what to do, logs say the way.

The backend is a fake httpx transport, the client a hand-driven ASGI receive/send pair, so the
test controls when each chunk is sent: a gateway that buffered a body would deadlock here
(and the test would fail on its timeout), one that streams passes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from labkit.runtime.gateway import Gateway
from labkit.runtime.routes import load_routes

CHUNK = b"x" * 65536


class Backend(httpx.AsyncBaseTransport):
    """Calls `handler(request)` as a server would: the request body still unread (httpx's
    MockTransport reads it first, which would hide buffering)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        result = self.handler(request)
        return await result if asyncio.iscoroutine(result) else result


def _json_response(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, stream=httpx.ByteStream(json.dumps(body).encode()),
                          headers={"content-type": "application/json"})


def _scope(method: str, path: str, host: str = "localhost:8080",
           headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": b"a=1",
            "scheme": "http", "client": ("127.0.0.1", 5555),
            "headers": [(b"host", host.encode()), *(headers or [])]}


class Sent:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.chunks: list[bytes] = []
        self.first_chunk = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message.get("body"):
            self.chunks.append(message["body"])
            self.body += message["body"]
            self.first_chunk.set()


def test_request_and_response_bodies_stream_through() -> None:
    async def run() -> None:
        backend_got_first = asyncio.Event()
        seen: dict[str, Any] = {}

        class Slow(httpx.AsyncByteStream):
            def __init__(self, client_side: Sent) -> None:
                self.client_side = client_side

            async def __aiter__(self):
                yield b"first-"
                # the client must have the first chunk before the backend makes the second
                await asyncio.wait_for(self.client_side.first_chunk.wait(), 5)
                yield b"second"

        sent = Sent()

        async def backend(request: httpx.Request) -> httpx.Response:
            seen["url"] = str(request.url)
            seen["headers"] = dict(request.headers)
            size = 0
            async for chunk in request.stream:
                size += len(chunk)
                backend_got_first.set()
            seen["size"] = size
            return httpx.Response(200, stream=Slow(sent), headers={"x-from": "backend"})

        gw = Gateway(load_routes(), lambda name: f"http://{name}.test",
                     transport=Backend(backend))
        messages = [{"type": "http.request", "body": CHUNK, "more_body": True},
                    "wait",
                    {"type": "http.request", "body": CHUNK, "more_body": False}]

        async def receive() -> dict[str, Any]:
            item = messages.pop(0)
            if item == "wait":  # the backend must see chunk 1 before the client sends chunk 2
                await asyncio.wait_for(backend_got_first.wait(), 5)
                item = messages.pop(0)
            return item

        scope = _scope("POST", "/api/commands/create-user",
                       headers=[(b"content-length", str(2 * len(CHUNK)).encode()),
                                (b"connection", b"keep-alive")])
        await asyncio.wait_for(gw(scope, receive, sent), 10)
        assert seen["size"] == 2 * len(CHUNK)
        assert seen["url"] == "http://command-service.test/api/commands/create-user?a=1"
        assert seen["headers"]["host"] == "localhost:8080"  # the Host is kept, as ingresses do
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        # hop-by-hop headers stay behind, and nothing of the gateway's own is added
        assert not {"connection", "user-agent", "accept-encoding"} & set(seen["headers"])
        assert sent.status == 200 and sent.body == b"first-second" and len(sent.chunks) == 2
        assert sent.headers["x-from"] == "backend"
        assert sent.headers["x-labkit-backend"] == "command-service"
        assert sent.headers["x-labkit-route"] == "HTTPRoute ecommerce-routes /api/commands"

    asyncio.run(run())


def _call(gw: Gateway, method: str, path: str, host: str = "localhost") -> Sent:
    async def run() -> Sent:
        sent = Sent()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await gw(_scope(method, path, host), receive, sent)
        return sent

    return asyncio.run(run())


def test_no_route_lists_the_routes_and_a_down_backend_names_its_step(caplog) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    gw = Gateway(load_routes(), lambda name: f"http://{name}.test",
                 transport=Backend(refuse),
                 steps={"query-service": "03-cqrs"}, log=logging.getLogger("gw-test"))
    missing = _call(gw, "GET", "/shop")
    body = json.loads(missing.body)
    assert missing.status == 404 and body["reason"] == "no_route"
    assert "/api/users" in body["detail"] and "api.local" in body["detail"]

    with caplog.at_level(logging.INFO, logger="gw-test"):
        down = _call(gw, "GET", "/api/queries/users")
    body = json.loads(down.body)
    assert down.status == 503 and body["reason"] == "backend_unavailable"
    assert "labkit up --step 03-cqrs" in body["detail"]
    record = next(r for r in caplog.records if r.getMessage() == "request")
    assert record.fields["route"] == "HTTPRoute ecommerce-routes /api/queries"
    assert (record.fields["backend"], record.fields["status"]) == ("query-service", 503)
    assert isinstance(record.fields["ms"], float)


def test_rewrite_target_applies_to_the_ingress_rules_only() -> None:
    paths: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return _json_response({})

    gw = Gateway(load_routes(), lambda name: f"http://{name}.test", rewrite_target="/",
                 transport=Backend(echo))
    _call(gw, "GET", "/api/users/7", host="api.local")
    _call(gw, "GET", "/api/users/7", host="localhost:8080")
    assert paths == ["/", "/api/users/7"]


def test_probes_answer_without_a_backend() -> None:
    gw = Gateway(load_routes(), lambda name: f"http://{name}.test")
    ready = _call(gw, "GET", "/readyz")
    assert ready.status == 200 and json.loads(ready.body)["service"] == "gateway"


def test_a_url_httpx_refuses_is_answered_with_a_json_400_not_forwarded() -> None:
    """The safety net under the path rules: whatever URL httpx will not send (here a raw control
    byte in the query, which an ASGI server could pass on) is a 400 the gateway answers."""
    forwarded: list[httpx.Request] = []

    def backend(request: httpx.Request) -> httpx.Response:
        forwarded.append(request)
        return _json_response({})

    gw = Gateway(load_routes(), lambda name: f"http://{name}.test", transport=Backend(backend))

    async def run() -> Sent:
        sent = Sent()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await gw({**_scope("GET", "/api/orders/1"), "query_string": b"a=\x00"}, receive, sent)
        return sent

    sent = asyncio.run(run())
    body = json.loads(sent.body)
    assert (sent.status, body["reason"]) == (400, "invalid_url") and not forwarded
    assert "order-service" in body["detail"] and "fix the path or the query" in body["detail"]
