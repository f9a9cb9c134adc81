"""Fault injection on a participant (`LABKIT_FAULTS=1`; otherwise /faults does not exist: 404).

`POST /faults {"mode", "times"?, "seconds"?, "path"?}` arms a fault; `GET /faults` lists the
armed ones; `DELETE /faults` disarms all. Faults fire in the order they were armed, each on the
next `times` requests whose path starts with `path` (default `/api/`):

- `error`: answer 503 `reason: "injected_fault"` without handling the request;
- `delay`: wait `seconds`, then handle it;
- `crash`: the process exits at once (`os._exit`), before handling it;
- `decline` (payment-service): the next `times` charges are refused, 409 `declined`.

Probes, the OpenAPI document and /faults itself are never affected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ecommerce import logs
from ecommerce.config import Settings
from ecommerce.domain.events import iso_utc
from ecommerce.services.admin import admin_dependencies, admin_enabled
from ecommerce.services.app import ApiError

Mode = Literal["error", "delay", "decline", "crash"]
REQUEST_MODES = ("error", "delay", "crash")
DEFAULT_PATH = "/api/"
EXEMPT = ("/faults", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")
#: Exit status of an injected crash (distinguishable from a real error in `lab.status()`).
CRASH_EXIT_CODE = 3


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode
    times: int = Field(1, ge=1, le=1_000_000, description="how many requests it affects")
    seconds: float | None = Field(None, gt=0, le=300, description="delay: seconds to wait")
    path: str | None = Field(None, min_length=1, max_length=200, pattern=r"^/[ -~]*$",
                             description="only requests whose path starts with this")

    @model_validator(mode="after")
    def _seconds(self) -> FaultRequest:
        if self.mode == "delay" and self.seconds is None:
            raise ValueError("mode 'delay' needs seconds (e.g. 2.0)")
        return self


@dataclass
class Fault:
    id: int
    mode: str
    times_left: int
    seconds: float | None
    path: str
    created_at: str
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "mode": self.mode, "times_left": self.times_left,
                "seconds": self.seconds, "path": self.path, "fired": self.fired,
                "created_at": self.created_at}


class FaultState:
    """The armed faults of one process (thread-safe: handlers run in a thread pool)."""

    def __init__(self, service: str, modes: tuple[str, ...]) -> None:
        self.service, self.modes = service, modes
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._faults)

    def arm(self, req: FaultRequest) -> Fault:
        fault = Fault(next(self._ids), req.mode, req.times, req.seconds, req.path or DEFAULT_PATH,
                      iso_utc())
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
        return n

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def take(self, modes: tuple[str, ...], path: str) -> Fault | None:
        """Fire the oldest armed fault of these modes that matches the path, if any."""
        if not self._faults:
            return None
        with self._lock:
            for f in self._faults:
                if f.mode in modes and path.startswith(f.path):
                    f.times_left -= 1
                    f.fired += 1
                    if f.times_left <= 0:
                        self._faults.remove(f)
                    return f
        return None


class FaultMiddleware:
    """Plain ASGI (no per-request cost while nothing is armed)."""

    def __init__(self, app: ASGIApp, faults: FaultState) -> None:
        self.app, self.faults = app, faults
        self.log = logging.getLogger(faults.service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.faults:
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        fault = None if path.startswith(EXEMPT) else self.faults.take(REQUEST_MODES, path)
        if fault is not None:
            logs.event(self.log, "injected fault", mode=fault.mode, path=path,
                       times_left=fault.times_left)
            if fault.mode == "crash":
                sys.stdout.flush()
                os._exit(CRASH_EXIT_CODE)
            if fault.mode == "error":
                response = JSONResponse(
                    {"detail": f"injected fault: {self.faults.service} answers 503",
                     "reason": "injected_fault"}, status_code=503)
                return await response(scope, receive, send)
            await asyncio.sleep(fault.seconds or 0)
        await self.app(scope, receive, send)


def install_faults(app: FastAPI, service: str, settings: Settings, *,
                   decline: bool = False) -> FaultState:
    """Add /faults and the middleware when LABKIT_FAULTS=1. Returns the state either way
    (with faults disabled nothing can arm it, so `take` always answers None)."""
    modes = (*REQUEST_MODES, "decline") if decline else REQUEST_MODES
    state = FaultState(service, modes)
    if not settings.faults:
        return state
    # With an admin token, arming a fault is an admin's act too (`ecommerce.services.admin`).
    guard = admin_dependencies(settings) if admin_enabled(settings) else []
    router = APIRouter(prefix="/faults", tags=["faults"], dependencies=guard)

    @router.post("", status_code=201, summary="Arm a fault")
    def arm(body: FaultRequest) -> dict[str, Any]:
        if body.mode not in modes:
            raise ApiError(422, "unsupported_mode",
                           f"{service} does not support mode {body.mode!r}; it supports "
                           f"{', '.join(modes)} (decline is payment-service's)")
        return {"service": service, **state.arm(body).as_dict()}

    @router.get("", summary="List armed faults")
    def armed() -> dict[str, Any]:
        return {"service": service, "faults": state.armed()}

    @router.delete("", summary="Disarm every fault")
    def clear() -> dict[str, Any]:
        return {"service": service, "cleared": state.clear()}

    app.include_router(router)
    # Innermost user middleware: inside the access log, so injected answers are logged too.
    app.user_middleware.append(Middleware(FaultMiddleware, faults=state))
    return state
