"""What every labkit HTTP service shares: the app factory, probes, errors, logs, `main()`.

A service module defines `create_app(settings) -> FastAPI` with `make_app(...)` and ends with
`if __name__ == "__main__": serve("<name>", create_app)`, which is exactly what its container
(and the local runtime) runs: `python -m ecommerce.services.<name>`.

Errors follow one shape, `{"detail": ..., "reason": ...}`:
- 422 for invalid bodies, with field-level messages;
- 404 for unknown ids; 409 for business refusals and version conflicts (machine-readable
  `reason`); 503 when a database is unreachable; never a bare 500 for bad input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ecommerce import logs
from ecommerce.config import Settings
from ecommerce.domain.events import EventValidationError
from ecommerce.services.body_hint import body_hint
from ecommerce.store.base import ConcurrencyError, StoreUnavailableError
from ecommerce.store.read_base import ReadStore

#: Raises when not ready (the message says why); may return a note to show instead of "ok".
ReadyCheck = Callable[[], object]

# Parameter types shared by the services. They must live at module level: with postponed
# annotations, FastAPI resolves them by name from the module's globals.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                              description="Same key, same answer, no new change")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class ApiError(Exception):
    """Raise from a handler to answer `status` with `{"detail": message, "reason": reason}`."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra


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


def make_app(
    service: str,
    settings: Settings,
    *,
    ready_checks: dict[str, ReadyCheck] | None = None,
    description: str = "",
) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, JSON access logs and the shared error shapes."""
    log = logging.getLogger(service)
    app = FastAPI(title=service, description=description, version="0.1.0")
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

    @app.exception_handler(ConcurrencyError)
    async def conflict(_: Request, exc: ConcurrencyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "version_conflict",
                             "stream_id": exc.stream_id, "expected_version": exc.expected,
                             "actual_version": exc.actual}, status_code=409)

    @app.exception_handler(StoreUnavailableError)
    async def unavailable(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "reason": "store_unavailable"}, status_code=503)

    app.add_middleware(AccessLog, log=log)
    return app


def serve(service: str, factory: Callable[[Settings], FastAPI]) -> None:
    """Run the service with uvicorn on LABKIT_HOST:LABKIT_PORT, logging JSON to stdout."""
    import uvicorn

    from ecommerce import plugins
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
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=3)
