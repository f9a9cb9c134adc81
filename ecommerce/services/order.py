"""order-service: places orders (PENDING), confirms them, cancels them (the compensation).

Streams `order-<id>`. Money is integer cents (`price`, `total`). Prices come from the
catalogue (`ecommerce.domain.stock.CATALOGUE`), never from the client. A confirm needs the
order paid and its stock reserved, as the saga's steps before the pivot leave it (409
`not_paid`, `not_reserved`: `ecommerce.domain.backing`), and is refused once a compensation
withdrew the order (`ecommerce.domain.fate`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ecommerce.config import Settings
from ecommerce.domain import orders as o
from ecommerce.domain.backing import BACKING_EVENTS, Backing, check_backed
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.fate import FATE_EVENTS, ORDER_WITHDRAWN, Fates
from ecommerce.domain.idempotency import event_id
from ecommerce.domain.stock import CATALOGUE, not_in_catalogue
from ecommerce.services.app import ApiError, IdempotencyKey, Limit, Offset, make_app, serve
from ecommerce.services.faults import install_faults
from ecommerce.services.participant import Key, Participant, install_store_errors
from ecommerce.store.base import EventStore
from ecommerce.store.factory import open_event_store

SERVICE = "order-service"
ID_PATTERN = o.ID_PATTERN  # the ids every participant takes in its URLs
Ident = Annotated[str, Field(pattern=ID_PATTERN, description="letters, digits, _ . : -")]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]
StatusFilter = Annotated[str | None, Query(pattern="^(PENDING|CONFIRMED|CANCELLED)$")]


class OrderLine(BaseModel):
    """No price: the catalogue's is charged (a client-sent `price` is an unknown field: 422)."""

    model_config = ConfigDict(extra="forbid")
    sku: Ident
    quantity: StrictInt = Field(ge=1, le=o.MAX_QUANTITY)


class PlaceOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: Ident | None = None
    saga_id: Ident | None = None
    user_id: Ident
    lines: list[OrderLine] = Field(min_length=1, max_length=o.MAX_LINES)


class CancelOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class CompensateOrder(CancelOrder):
    order_id: Ident


class Orders:
    """Every order, folded from the `order-*` streams."""

    def __init__(self) -> None:
        self.by_id: dict[str, o.Order] = {}

    def get(self, order_id: str) -> o.Order:
        return self.by_id.get(order_id) or o.Order(order_id)

    def apply(self, e: RecordedEvent) -> None:
        oid = e.stream_id[len(o.STREAM_PREFIX):]
        self.by_id[oid] = o.apply(self.get(oid), e)


def priced(lines: list[OrderLine]) -> list[dict[str, Any]]:
    """The lines with the catalogue's unit price; an unknown SKU is refused."""
    out = []
    for ln in lines:
        item = CATALOGUE.get(ln.sku)
        if item is None:
            raise o.OrderRuleError("unknown_sku", not_in_catalogue(ln.sku, CATALOGUE))
        out.append({"sku": ln.sku, "quantity": ln.quantity, "price": item.price})
    return out


def create_app(settings: Settings, store: EventStore | None = None) -> FastAPI:
    es = store or open_event_store(settings)
    state = Orders()
    fates = Fates()
    backing = Backing()

    def fold(e: RecordedEvent) -> None:
        fates.apply(e)
        if e.type in BACKING_EVENTS:
            backing.apply(e)
        elif e.stream_id.startswith(o.STREAM_PREFIX) and e.type != ORDER_WITHDRAWN:
            state.apply(e)

    p = Participant(es, fold, types=[*o.ORDER_EVENTS, *FATE_EVENTS, *BACKING_EVENTS],
                    read_back=True)
    p.start()
    app = make_app(SERVICE, settings, ready_checks={"event_store": es.last_position,
                                                    "events": p.ready},
                   description="Orders: PENDING -> CONFIRMED | CANCELLED. Money in integer cents.")
    install_store_errors(app)
    install_faults(app, SERVICE, settings)

    def refusal(endpoint: str, key: Key, exc: o.OrderRuleError) -> JSONResponse:
        if exc.reason in ("not_found", "unknown_sku"):
            return p.refuse(endpoint, key, 404, exc.reason, str(exc))
        return p.refuse(endpoint, key, 409, exc.reason, str(exc))

    @app.post("/api/orders", status_code=201, tags=["orders"], summary="Place an order (PENDING)")
    def place(body: PlaceOrder, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key = Key.of(idempotency_key, body.model_dump())
        # Without an order_id, a retry with the same key must name the same order.
        oid = body.order_id or (event_id(SERVICE, "order", key.value) if key.given
                                else str(uuid.uuid4()))
        endpoint = f"place/{oid}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            order = state.get(oid)
            try:
                ev = o.place(order, body.user_id, priced(body.lines), body.saga_id)
            except o.OrderRuleError as exc:
                return refusal(endpoint, key, exc)
            reply = _placed_reply(oid, ev.data)
            p.append(o.stream_id(oid), p.with_reply(ev, endpoint, key, 201, reply), "none")
            return p.answer(endpoint, key, 201, reply)

        return p.run(attempt)

    def transition(oid: str, key: Key, endpoint: str, decide: Any) -> JSONResponse:
        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            order = state.get(oid)
            try:
                ev = decide(order)
            except o.OrderRuleError as exc:
                return refusal(endpoint, key, exc)
            if ev is None:  # nothing to do: the order is in that state already
                return p.answer(endpoint, key, 200, _body(order))
            reply = _body(replace(order, status=_STATUS_AFTER[ev.type], version=order.version + 1,
                                  reason=ev.data.get("reason") or order.reason))
            p.append(o.stream_id(oid), p.with_reply(ev, endpoint, key, 200, reply), order.version)
            return p.answer(endpoint, key, 200, reply)

        return p.run(attempt)

    def confirm_unless_withdrawn(order: o.Order) -> Any:
        if order.exists and order.status == o.PENDING:
            if order.id in fates.withdrawn:
                raise o.OrderRuleError(
                    "order_withdrawn", f"order {order.id} cannot be confirmed: its payment was "
                    "refunded or its stock released (a compensation ran); cancel it instead")
            check_backed(order, backing)  # paid and reserved, whoever asks
        return o.confirm(order)

    @app.post("/api/orders/{order_id}/confirm", tags=["orders"], summary="Confirm (the pivot)")
    def confirm(order_id: OrderId, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        return transition(order_id, Key.of(idempotency_key, {"order_id": order_id}),
                          f"confirm/{order_id}", confirm_unless_withdrawn)

    @app.post("/api/orders/{order_id}/cancel", tags=["orders"],
              summary="Cancel a pending order (compensation; cancelling twice is a no-op)")
    def cancel(order_id: OrderId, body: CancelOrder | None = None,
               idempotency_key: IdempotencyKey = None) -> JSONResponse:
        reason = body.reason if body else ""
        key = Key.of(idempotency_key, {"order_id": order_id, "reason": reason})
        return transition(order_id, key, f"cancel/{order_id}",
                          lambda order: o.cancel(order, reason))

    @app.post("/api/orders/compensate", tags=["orders"], summary="The course's name for cancel")
    def compensate(body: CompensateOrder, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key = Key.of(idempotency_key, {"order_id": body.order_id, "reason": body.reason})
        return transition(body.order_id, key, f"cancel/{body.order_id}",
                          lambda order: o.cancel(order, body.reason))

    @app.get("/api/orders", tags=["orders"], summary="Orders, newest first")
    def list_orders(status: StatusFilter = None, limit: Limit = 100,
                    offset: Offset = 0) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            found = [x for x in state.by_id.values() if x.exists and status in (None, x.status)]
        found.reverse()
        return {"orders": [x.as_dict() for x in found[offset:offset + limit]],
                "total": len(found)}

    @app.get("/api/orders/{order_id}", tags=["orders"])
    def get_order(order_id: str) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            order = state.get(order_id)
        if not order.exists:
            raise ApiError(404, "not_found", f"order {order_id!r} does not exist")
        return order.as_dict()

    return app


_STATUS_AFTER = {o.ORDER_CONFIRMED: o.CONFIRMED, o.ORDER_CANCELLED: o.CANCELLED}


def _body(order: o.Order) -> dict[str, Any]:
    """A reply's body: the order without timestamps, so it is known before the append (the
    reply is recorded in the event) and a retry gets exactly the same bytes."""
    doc = order.as_dict()
    del doc["created_at"], doc["updated_at"]
    return doc


def _placed_reply(oid: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"order_id": oid, "status": o.PENDING, "total": data["total"], "lines": data["lines"],
            "user_id": data["user_id"], "saga_id": data["saga_id"], "reason": None, "version": 1}


if __name__ == "__main__":
    serve(SERVICE, create_app)
