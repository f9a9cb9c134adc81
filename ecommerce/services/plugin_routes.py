"""What every service does with the plugins (`ecommerce.plugins`): load them at start, say in
`/readyz` whether they loaded, and serve the plugin handlers registered for this service at
`POST /api/plugins/<name>`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Body, FastAPI, Header
from fastapi.responses import JSONResponse

from ecommerce import plugins
from ecommerce.config import Settings
from ecommerce.domain.events import NewEvent
from ecommerce.store.base import ANY, EventStore


class Context:
    """What a plugin handler gets (`plugins.HandlerContext`)."""

    def __init__(self, store: EventStore, service: str, key: str | None) -> None:
        self.store, self.service, self.idempotency_key = store, service, key

    def append(self, stream: str, event_type: str, data: Mapping[str, Any], *,
               event_id: str | None = None) -> dict[str, Any]:
        meta = {"service": self.service, "idempotency_key": self.idempotency_key}
        event = (NewEvent(event_type, dict(data), meta, id=event_id) if event_id
                 else NewEvent(event_type, dict(data), meta))
        result = self.store.append(stream, [event], ANY)
        return {"stream_id": stream, "version": result.version,
                "position": result.last_position, "written": result.written}

    def read_stream(self, stream: str) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.store.read_stream(stream)]


def install(app: FastAPI, service: str, settings: Settings) -> None:
    """Add the `plugins` readiness check and this service's plugin handlers to `app`."""
    app.state.ready_checks["plugins"] = plugins.ready_check
    handlers = plugins.handlers_of(service)
    if not handlers:
        return
    from ecommerce.store.factory import open_event_store

    store: list[EventStore] = []

    def events() -> EventStore:
        if not store:
            store.append(open_event_store(settings))
        return store[0]

    log = logging.getLogger(service)

    def route(name: str) -> None:
        fn = handlers[name]

        @app.post(f"/api/plugins/{name}", tags=["plugins"], name=f"plugin_{name}",
                  summary=f"Plugin handler {name}")
        def call(body: dict[str, Any] = Body(default_factory=dict),  # noqa: B008
                 idempotency_key: str | None = Header(None, alias="Idempotency-Key")
                 ) -> JSONResponse:
            try:
                answer = fn(Context(events(), service, idempotency_key), body)
            except Exception as exc:
                log.exception("plugin handler %s failed", name)
                return JSONResponse({"detail": f"plugin handler {name} failed: "
                                               f"{type(exc).__name__}: {exc}",
                                     "reason": "plugin_error"}, status_code=500)
            return JSONResponse(answer if isinstance(answer, dict) else {"result": answer})

    for name in handlers:
        route(name)
