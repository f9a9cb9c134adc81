"""command-service: the CQRS write side. Validates commands against the user's event stream
and appends events with an expected version. It is the only writer of `user-*` streams.

Reads never come here: the read side (query-service) answers from projections, so a client
that wants to see its own write waits until the projection's checkpoint reaches the
`position` this service returns.

Idempotency-Key: scoped to the command and the user (or, for place-order, the saga the key
names). The same key with the same request answers as the first time; with a different
request it is 422 `idempotency_key_reused` (the event stores the request's fingerprint).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ecommerce.config import Settings
from ecommerce.domain import users as u
from ecommerce.domain.events import NewEvent, RecordedEvent, iso_utc
from ecommerce.domain.idempotency import KeyReused, fingerprint
from ecommerce.services.app import ApiError, IdempotencyKey, make_app, not_found, serve
from ecommerce.services.participant import fold_past_parked
from ecommerce.store.base import ConcurrencyError, DuplicateEventError, EventStore
from ecommerce.store.factory import open_event_store

COMMAND_TYPES = {"create-user": "CreateUserCommand", "update-user": "UpdateUserCommand",
                 "deactivate-user": "DeactivateUserCommand", "place-order": "PlaceOrderCommand"}
#: Retries when a command without `expected_version` races another writer of the same user.
AUTO_RETRIES = 3
_NS = uuid.UUID("5b0c5c3e-6f4e-4f53-9d7e-3d1f6c1b8a11")

UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class CreateUser(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"name": "Kim", "email": "kim@example.com"}]})
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    tier: str = Field("standard", pattern="^(standard|premium)$")
    user_id: UserId | None = None


class UpdateUser(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_id": "alice", "email": "alice.kim@example.com"}]})
    user_id: UserId
    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=320)
    expected_version: StrictInt | None = Field(None, ge=0, le=2**31)


class DeactivateUser(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_id": "alice", "reason": "left the course"}]})
    user_id: UserId
    reason: str = Field("", max_length=500)
    expected_version: StrictInt | None = Field(None, ge=0, le=2**31)


class OrderLine(BaseModel):
    """No price: the catalogue's is charged (a `price` field is refused as unknown)."""

    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(ge=1, le=10_000)


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_id": "alice", "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}]})
    user_id: UserId
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    order_id: UserId | None = None
    saga_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    crash_after: str | None = Field(
        None, max_length=100, description="`<step>:<Event>`: the orchestrator kills itself right "
        "after recording it (the crash scenario; only with LABKIT_FAULTS=1)")


def _key_ids(key: str | None, scope: str = "") -> tuple[str, str]:
    """(command_id, event_id): derived from the Idempotency-Key in its scope (command and
    user), else fresh."""
    if key:
        scoped = f"{scope}\x1f{key}" if scope else key
        return (str(uuid.uuid5(_NS, "command:" + scoped)), str(uuid.uuid5(_NS, "event:" + scoped)))
    return str(uuid.uuid4()), str(uuid.uuid4())


def _reused(command: str, key: str) -> ApiError:
    exc = KeyReused(command, key)
    body = exc.as_body()
    return ApiError(422, body["reason"], body["detail"], errors=body["errors"])


def _same_order(started: dict[str, Any], body: PlaceOrder) -> bool:
    """Does the saga a key started order what this request orders?"""
    lines = [(ln["sku"], ln["quantity"]) for ln in started.get("lines", [])]
    return (started.get("user_id") == body.user_id
            and lines == [(ln.sku, ln.quantity) for ln in body.lines]
            and body.order_id in (None, started.get("order_id"))
            and (started.get("faults") or {}).get("crash_after") == body.crash_after)


def _accepted(command: str, command_id: str, user_id: str, event: RecordedEvent) -> dict[str, Any]:
    return {"command_id": command_id, "type": COMMAND_TYPES[command], "status": "accepted",
            "user_id": user_id, "event_id": event.id, "event_type": event.type,
            "position": event.position, "version": event.version,
            "timestamp": event.recorded_iso}


class UserCommands:
    """Command handlers: load the user, apply the rule, append with the expected version."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def handle(self, command: str, user_id: str, decide, expected: int | None,
               key: str | None, request: object = None) -> dict[str, Any]:
        command_id, event_id = _key_ids(key, f"{command}\x1f{user_id}")
        fp = fingerprint(request)
        stream = u.stream_id(user_id)
        for attempt in range(AUTO_RETRIES + 1):
            events = self.store.read_stream(stream)
            done = next((e for e in events if e.id == event_id), None)
            if done is not None:  # the same Idempotency-Key again: answer as the first time
                if key and done.metadata.get("request", fp) != fp:
                    raise _reused(command, key)
                return _accepted(command, command_id, user_id, done)
            user = fold_past_parked(self.store, events, partial(u.fold, user_id))
            if expected is not None and expected != user.version:
                raise ConcurrencyError(stream, expected, user.version)
            try:
                new = decide(user)
            except u.UserRuleError as exc:
                status = 404 if exc.reason == "not_found" else 409
                raise ApiError(status, exc.reason, str(exc)) from None
            meta = {"command_id": command_id, "command": command}
            if key:
                meta["request"] = fp
            event = NewEvent(new.type, new.data, meta, id=event_id,
                             schema_version=new.schema_version)
            try:
                result = self.store.append(stream, [event], user.version)
            except DuplicateEventError:
                # Only a key can make ids collide; scoped per command and user, this is a
                # bug or a hand-made event: refuse it as a reused key, never a 500.
                raise _reused(command, key or "") from None
            except ConcurrencyError:
                if expected is not None or attempt == AUTO_RETRIES:
                    raise
                continue
            recorded = self.store.read_stream(stream, result.version)[0]
            return _accepted(command, command_id, user_id, recorded)
        raise AssertionError("unreachable")


def create_app(settings: Settings, store: EventStore | None = None) -> FastAPI:
    es = store or open_event_store(settings)
    handlers = UserCommands(es)
    app = make_app("command-service", settings, ready_checks={"event_store": es.last_position},
                   description="CQRS write side: commands become events in `user-*` streams.")

    @app.post("/api/commands/create-user", status_code=202, tags=["commands"])
    def create_user(body: CreateUser, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        if body.user_id:
            user_id = body.user_id
        elif idempotency_key:
            user_id = uuid.uuid5(_NS, "user:" + idempotency_key).hex[:12]
        else:
            user_id = uuid.uuid4().hex[:12]
        return handlers.handle("create-user", user_id,
                               lambda user: u.create(user, body.name, body.email, body.tier),
                               None, idempotency_key, body.model_dump())

    @app.post("/api/commands/update-user", status_code=202, tags=["commands"])
    def update_user(body: UpdateUser, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        return handlers.handle("update-user", body.user_id,
                               lambda user: u.update(user, body.name, body.email),
                               body.expected_version, idempotency_key, body.model_dump())

    @app.post("/api/commands/deactivate-user", status_code=202, tags=["commands"])
    def deactivate_user(body: DeactivateUser, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        return handlers.handle("deactivate-user", body.user_id,
                               lambda user: u.deactivate(user, body.reason),
                               body.expected_version, idempotency_key, body.model_dump())

    @app.post("/api/commands/place-order", status_code=202, tags=["commands"],
              summary="Start an order saga (the orchestrator drives it)")
    def place_order(body: PlaceOrder, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        """The write side starts the saga, as in the course's architecture (command service ->
        saga job): it opens the saga's stream with `SagaStarted`; from there on only the
        saga-orchestrator writes to it."""
        from ecommerce.domain import saga as sd
        from ecommerce.domain.stock import CATALOGUE
        from ecommerce.saga.orchestrator import start_saga

        if body.crash_after and not settings.faults:
            raise ApiError(422, "faults_disabled", "crash_after needs LABKIT_FAULTS=1")
        command_id, _ = _key_ids(idempotency_key, "place-order")
        saga_id = body.saga_id or (uuid.uuid5(_NS, "saga:" + idempotency_key).hex[:12]
                                   if idempotency_key else None)
        prices = {sku: item.price for sku, item in CATALOGUE.items()}
        lines = [line.model_dump() for line in body.lines]
        try:
            sid = start_saga(es, body.user_id, lines, order_id=body.order_id, saga_id=saga_id,
                             prices=prices,
                             faults={"crash_after": body.crash_after} if body.crash_after else None)
        except sd.SagaRuleError as exc:
            if exc.reason == "already_exists" and idempotency_key and saga_id is not None:
                sid = saga_id  # the same key again: the saga it started the first time
            else:
                raise ApiError(409 if exc.reason == "already_exists" else 422, exc.reason,
                               str(exc)) from None
        first = es.read_stream(sd.stream_id(sid))[0]
        if idempotency_key and not _same_order(first.data, body):
            raise _reused("place-order", idempotency_key)
        return {"command_id": command_id, "type": COMMAND_TYPES["place-order"],
                "status": "accepted", "saga_id": sid, "order_id": first.data.get("order_id"),
                "event_id": first.id, "position": first.position,
                "timestamp": first.recorded_iso}

    @app.get("/api/commands/users/{user_id}/version", tags=["commands"],
             summary="The user's current stream version (for expected_version)")
    def user_version(user_id: str) -> dict[str, Any]:
        version = es.stream_version(u.stream_id(user_id))
        if version == 0:
            raise not_found("user", user_id)
        return {"user_id": user_id, "version": version,
                "checked_at": iso_utc()}

    return app


if __name__ == "__main__":
    serve("command-service", create_app)
