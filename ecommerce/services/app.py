"""What every labkit HTTP service shares: the app factory, probes, errors, logs, `main()`.

A service module defines `create_app(settings) -> FastAPI` with `make_app(...)` and ends with
`if __name__ == "__main__": serve("<name>", create_app)`, which is exactly what its container
(and the local runtime) runs: `python -m ecommerce.services.<name>`.

Errors follow one shape, `{"detail": ..., "reason": ...}` (`ErrorBody`), and the OpenAPI
document says so for every operation (`document_errors`), so a client generated from it, or
schemathesis, sees what is really sent:
- 422 for invalid bodies, with field-level messages (`errors`); unknown fields are refused
  (422 `extra_forbidden`) in every body of every service, never silently dropped;
- 404 for unknown ids; 409 for business refusals and version conflicts (machine-readable
  `reason`); 413 for a body over 1 MiB (`BodyLimit`, checked while it streams in);
  503 when a database is unreachable; never a bare 500 for bad input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from ecommerce import __version__, logs
from ecommerce.config import Settings
from ecommerce.domain.events import EventValidationError, UnreadableEventError, UpcastError
from ecommerce.services.body_hint import body_hint
from ecommerce.store.base import ConcurrencyError, StoreUnavailableError
from ecommerce.store.read_base import ReadStore

#: Raises when not ready (the message says why); may return a note to show instead of "ok".
ReadyCheck = Callable[[], object]

# Parameter types shared by the services. They must live at module level: with postponed
# annotations, FastAPI resolves them by name from the module's globals.
#: What an HTTP header value may hold here: visible ASCII (the server refuses the rest, 400).
HEADER_TEXT = r"^[!-~]+$"
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200, pattern=HEADER_TEXT,
    description="Same key and same request: the first answer again; another request: 422")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class ApiError(Exception):
    """Raise from a handler to answer `status` with `{"detail": message, "reason": reason}`."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra


#: The largest request body any service reads (bigger: 413 before it is held in memory).
MAX_BODY = 1024 * 1024


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: `detail` (one sentence: what went wrong, what to do) and `reason`
    (machine-readable); a 422 adds `errors`; some add what they are about (`sku`...)."""

    model_config = ConfigDict(extra="allow")
    detail: str
    reason: str
    errors: list[FieldError] | None = None


#: Status -> what it means, documented on every operation.
ERROR_STATUSES = {
    404: "Unknown id or path (`not_found`, `unknown_sku`...)",
    409: "A business rule refused it, or a version conflict (see `reason`)",
    413: "The body is over 1 MiB (`body_too_large`)",
    422: "Invalid request (`validation_error` with `errors`, `idempotency_key_reused`...)",
    503: "A database or peer is unreachable, or an injected fault (`store_unavailable`...)",
}


class BodyTooLarge(HTTPException):
    """Raised while a body streams in past MAX_BODY (an HTTPException, so FastAPI's body parser
    lets it through instead of turning it into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes ({limit // 1024} KiB); "
                              "send less (one order, one command at a time)")


def _too_large(limit: int) -> JSONResponse:
    exc = BodyTooLarge(limit)
    return JSONResponse({"detail": exc.detail, "reason": "body_too_large"}, status_code=413)


class BodyLimit:
    """413 for a body over `limit` bytes: at once when Content-Length says so, else as soon as
    the chunks received pass it (a chunked upload is never read whole into memory)."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit)(scope, receive, send)
                return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _known_query(route: Any) -> frozenset[str]:
    known = getattr(route, "_labkit_known_query", None)
    if known is None:
        names: set[str] = set()
        todo = [route.dependant]
        while todo:
            dependant = todo.pop()
            names.update(f.alias for f in dependant.query_params)
            todo.extend(dependant.dependencies)
        known = frozenset(names)
        route._labkit_known_query = known
    return known


async def refuse_unknown_query(request: Request) -> None:
    """Unknown query parameters are refused like unknown body fields (422 `extra_forbidden`),
    so a misspelt `?limt=5` is an error, not silently the default; so is one given twice
    (`?stream=a&stream=b`: which one was meant?)."""
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    keys = [k for k, _ in request.query_params.multi_items()]
    extra = sorted({k for k in keys if k not in _known_query(route)})
    twice = sorted({k for k in keys if keys.count(k) > 1} - set(extra))
    if extra or twice:
        raise RequestValidationError(
            [{"loc": ("query", k), "msg": "Extra inputs are not permitted",
              "type": "extra_forbidden", "input": None} for k in extra]
            + [{"loc": ("query", k), "msg": "Given more than once; send it once",
                "type": "repeated", "input": None} for k in twice])


def document_errors(app: FastAPI) -> None:
    """Publish the error answers the services really send: `ErrorBody` for 404, 409, 413, 422
    and 503 on every operation (replacing FastAPI's `HTTPValidationError`), 403 where the admin
    token is checked, and 200 beside a 201 (an idempotent repeat answers 200)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schemas["ErrorBody"].pop("$defs", {}).items():
            schemas[name] = sub
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for path, ops in doc.get("paths", {}).items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if path in ("/healthz", "/readyz"):
                    responses.setdefault("503", {"description": "Not ready (readyz)"})
                    continue
                for status, text in ERROR_STATUSES.items():
                    # An operation's own description of a status (its reasons) is kept;
                    # FastAPI's own 422 ("Validation Error") is not.
                    own = responses.get(str(status), {}).get("description") if status != 422 else None
                    responses[str(status)] = {"description": own or text, **ref}
                responses["400"] = {
                    "description": "Malformed HTTP (e.g. a header value that is not visible "
                                   "ASCII): refused by the HTTP server before the service",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}
                body = op.get("requestBody")
                if body is not None and "required" not in body:
                    body["required"] = False  # an optional body: sending none is valid
                params = op.get("parameters", [])
                if any(p.get("name") == "X-Labkit-Admin-Token" for p in params):
                    responses["403"] = {"description": "Admin token missing or wrong", **ref}
                if "201" in responses and "200" not in responses:
                    responses["200"] = {"description": "Done before: the state as it is "
                                        "(an idempotent repeat)",
                                        "content": {"application/json": {"schema": {}}}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} does not exist")


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"),
                    "type": err.get("type", "")})
    return out


class AccessLog:
    """One JSON log line per request (not for probes), as plain ASGI middleware: the
    `@app.middleware("http")` form costs a task and a stream per request."""

    def __init__(self, app: Any, log: logging.Logger) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in ("/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            logs.event(self.log, "request", method=scope.get("method"), path=path, status=status,
                       ms=round((time.perf_counter() - started) * 1000, 2))


def read_store_check(reads: ReadStore) -> Callable[[], str | None]:
    """Ready if the read store answers; says so when the model was rebuilt automatically
    (the event log had been replaced), so `/readyz` and `labkit status` tell."""

    def check() -> str | None:
        reads.ping()
        note = reads.note()
        return f"ok; read model {note}" if note else None

    return check


def _method_not_allowed(request: Request) -> JSONResponse:
    """405 with the methods the path takes, from every route of that path (Starlette's own
    `Allow` names only the first route it met: `HEAD /api/orders` said `POST`)."""
    path = request.url.path
    allowed = sorted({m for r in request.app.routes
                      if getattr(r, "methods", None) and r.path_regex.match(path)
                      for m in r.methods} - {"HEAD"})
    return JSONResponse(
        {"detail": f"{request.method} is not served at {path}: send {' or '.join(allowed)}",
         "reason": "method_not_allowed", "allowed": allowed},
        status_code=405, headers={"Allow": ", ".join(allowed)})


def make_app(
    service: str,
    settings: Settings,
    *,
    ready_checks: dict[str, ReadyCheck] | None = None,
    description: str = "",
) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, JSON access logs and the shared error shapes."""
    log = logging.getLogger(service)
    app = FastAPI(title=service, description=description, version=__version__,
                  dependencies=[Depends(refuse_unknown_query)])
    app.state.settings = settings
    app.state.service = service
    checks = dict(ready_checks or {})
    app.state.ready_checks = checks

    @app.get("/healthz", tags=["probes"], summary="Process alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["probes"], summary="Databases and peers reachable")
    def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        ok = True
        for name, check in app.state.ready_checks.items():
            try:
                note = check()
                results[name] = note if isinstance(note, str) and note else "ok"
            except Exception as exc:
                ok = False
                results[name] = str(exc) or type(exc).__name__
        return JSONResponse({"status": "ready" if ok else "not ready", "service": service,
                             "checks": results}, status_code=200 if ok else 503)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "reason": exc.reason, **exc.extra},
                            status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = {"detail": "invalid request", "reason": "validation_error",
                "errors": _field_errors(exc)}
        # No usable JSON body at all (the course's bodiless curl): say what to send, and how.
        body.update(body_hint(request, exc.errors()) or {})
        return JSONResponse(body, status_code=422)

    @app.exception_handler(EventValidationError)
    async def bad_event(_: Request, exc: EventValidationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "invalid_event"}, status_code=422)

    @app.exception_handler(UpcastError)
    async def upcast_failed(_: Request, exc: UpcastError) -> JSONResponse:
        return JSONResponse({"detail": f"{service} cannot read the log: {exc}",
                             "reason": "upcaster_failed"}, status_code=500)

    @app.exception_handler(UnreadableEventError)
    async def unreadable(_: Request, exc: UnreadableEventError) -> JSONResponse:
        return JSONResponse({"detail": f"{service} cannot go on: {exc}",
                             "reason": "unreadable_event", "position": exc.position},
                            status_code=503)

    @app.exception_handler(ConcurrencyError)
    async def conflict(_: Request, exc: ConcurrencyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "version_conflict",
                             "stream_id": exc.stream_id, "expected_version": exc.expected,
                             "actual_version": exc.actual}, status_code=409)

    @app.exception_handler(StoreUnavailableError)
    async def unavailable(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "store_unavailable"}, status_code=503)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "reason": "body_too_large"}, status_code=413)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own (405 method not allowed, 404 no such path): the shared shape too.
        if exc.status_code == 405:
            return _method_not_allowed(request)
        reason = {404: "not_found"}.get(exc.status_code, "http_error")
        return JSONResponse({"detail": str(exc.detail), "reason": reason},
                            status_code=exc.status_code, headers=exc.headers)

    document_errors(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(AccessLog, log=log)
    return app


def serve(service: str, factory: Callable[[Settings], FastAPI]) -> None:
    """Run the service with uvicorn on LABKIT_HOST:LABKIT_PORT, logging JSON to stdout."""
    from ecommerce import plugins, quiet_server
    from ecommerce.services import plugin_routes

    logs.setup(service)
    settings = Settings.from_env()
    plugins.load_all(logger=logging.getLogger(service))
    try:
        app = factory(settings)
    except StoreUnavailableError as exc:
        logging.getLogger(service).error(str(exc))
        raise SystemExit(2) from None
    plugin_routes.install(app, service, settings)
    logs.event(logging.getLogger(service), "starting", host=settings.host, port=settings.port)
    quiet_server.run(app, host=settings.host, port=settings.port, log_config=None,
                     access_log=False, timeout_graceful_shutdown=3)
