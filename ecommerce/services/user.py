"""user-service (Lab 1's service): reads users folded from the `user-*` streams of the event
store (consistent: a user created a moment ago is there), and a compatibility `POST /api/users`
that forwards to command-service, the single writer of `user-*`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ecommerce.config import Settings
from ecommerce.domain import users as u
from ecommerce.domain.events import RecordedEvent
from ecommerce.services.app import ApiError, IdempotencyKey, Limit, Offset, make_app, serve
from ecommerce.services.faults import install_faults
from ecommerce.services.participant import Participant, install_store_errors
from ecommerce.store.base import EventStore
from ecommerce.store.factory import open_event_store

SERVICE = "user-service"
COMMAND_SERVICE = "command-service"
PREFIX = "user-"
#: Seconds to wait for command-service.
PEER_TIMEOUT = 5.0


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "Kim", "email": "kim@example.com"}]})
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    tier: str = Field("standard", pattern="^(standard|premium)$")


class Users:
    def __init__(self) -> None:
        self.by_id: dict[str, u.User] = {}

    def apply(self, e: RecordedEvent) -> None:
        uid = e.stream_id[len(PREFIX):]
        self.by_id[uid] = u.apply(self.by_id.get(uid) or u.User(uid), e)


def create_app(settings: Settings, store: EventStore | None = None,
               transport: httpx.BaseTransport | None = None) -> FastAPI:
    """`transport` replaces the network to command-service (tests)."""
    es = store or open_event_store(settings)
    state = Users()
    p = Participant(es, state.apply, stream_prefix=PREFIX)
    p.start()
    commands = httpx.Client(base_url=settings.peer_url(COMMAND_SERVICE), timeout=PEER_TIMEOUT,
                            transport=transport)

    # Ready without command-service: reads (the saga's validate-user step) need only the event
    # store, and the course deploys this service (02-saga) before command-service (03-cqrs).
    # POST /api/users answers 503 `peer_unavailable` while command-service is not there.
    app = make_app(SERVICE, settings,
                   ready_checks={"event_store": es.last_position, "events": p.ready},
                   description="Users, read from the event store; writes go to command-service.")
    install_store_errors(app)
    install_faults(app, SERVICE, settings)

    def lookup(user_id: str) -> u.User:
        with p.lock:
            p.catch_up()
            return state.by_id.get(user_id) or u.User(user_id)

    @app.get("/api/users", tags=["users"], summary="Every user, folded from the event store")
    def list_users(limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            found = [x for x in state.by_id.values() if x.exists]
        return {"users": [x.as_dict() for x in found[offset:offset + limit]], "total": len(found)}

    @app.get("/api/users/{user_id}", tags=["users"],
             summary="One user (the saga's validate-user step: 404 or inactive fails it)")
    def get_user(user_id: str) -> dict[str, Any]:
        user = lookup(user_id)
        if not user.exists:
            raise ApiError(404, "not_found", f"user {user_id!r} does not exist")
        return user.as_dict()

    @app.post("/api/users", status_code=201, tags=["users"],
              summary="Create a user (forwarded to command-service create-user)")
    def create_user(body: NewUser, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        # Bytes as they arrived (headers are latin-1), and ASCII-only JSON: any input forwards.
        headers: dict[bytes, bytes] = {b"Content-Type": b"application/json"}
        if idempotency_key:
            headers[b"Idempotency-Key"] = idempotency_key.encode("latin-1")
        try:
            r = commands.post("/api/commands/create-user", content=json.dumps(body.model_dump()),
                              headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(503, "peer_unavailable",
                           f"command-service is not reachable ({type(exc).__name__}); retry "
                           "later with the same Idempotency-Key") from None
        try:
            answer = r.json()
        except ValueError:
            answer = {"detail": r.text[:500]}
        if r.status_code >= 500 or not isinstance(answer, dict):
            raise ApiError(503, "peer_unavailable",
                           f"command-service answered {r.status_code}: {answer!r:.300}")
        if r.status_code >= 300:
            return JSONResponse(answer, status_code=r.status_code)
        user = lookup(str(answer.get("user_id")))
        doc = user.as_dict() if user.exists else {"id": answer.get("user_id")}
        return JSONResponse({**doc, "command_id": answer.get("command_id"),
                             "event_id": answer.get("event_id"), "position": answer.get("position")},
                            status_code=201)

    return app


if __name__ == "__main__":
    serve(SERVICE, create_app)
