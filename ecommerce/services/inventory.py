"""inventory-service: stock per SKU; reserves all of an order's lines or none; releases them.

Streams `stock-<sku>` (guarded by expected version: no oversell) and `reservation-<order_id>`
(the decision, first writer wins). See `ecommerce.domain.stock` for why that is enough.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt

from ecommerce.config import Settings
from ecommerce.domain import stock as st
from ecommerce.services.app import ApiError, IdempotencyKey, make_app, serve
from ecommerce.services.faults import install_faults
from ecommerce.services.participant import Key, Participant, install_store_errors
from ecommerce.store.base import ConcurrencyError, EventStore
from ecommerce.store.factory import open_event_store

SERVICE = "inventory-service"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN, description="letters, digits, _ . : -")]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]


class ReserveLine(BaseModel):
    sku: Ident
    quantity: StrictInt = Field(ge=1, le=st.MAX_QUANTITY)


class Reserve(BaseModel):
    order_id: Ident
    lines: list[ReserveLine] = Field(min_length=1, max_length=st.MAX_LINES)


class ReleaseBody(BaseModel):
    reason: str = Field("", max_length=500)


def _reserved(r_or_lines: st.Reservation | tuple[str, st.Lines]) -> dict[str, Any]:
    oid, lines = ((r_or_lines.order_id, r_or_lines.lines) if isinstance(r_or_lines, st.Reservation)
                  else r_or_lines)
    return {"order_id": oid, "status": st.RESERVED, "lines": st.lines_as_dicts(lines)}


def _short(oid: str, short: dict[str, Any]) -> dict[str, Any]:
    return {"detail": f"{short['sku']}: {short['requested']} requested, {short['available']} "
                      "available; nothing was reserved",
            "reason": "insufficient_stock", "order_id": oid, **short}


def _released(r: st.Reservation) -> dict[str, Any]:
    held = r.lines if r.status in (st.RESERVED, st.RELEASED) else ()
    return {"order_id": r.order_id, "status": st.RELEASED, "lines": st.lines_as_dicts(held)}


def seed_catalogue(p: Participant, inv: st.Inventory) -> int:
    """Seed every catalogue SKU not yet in the log. Safe to run in two replicas at once: the
    seeding events have fixed ids and expect an empty stream."""
    seeded = 0
    with p.lock:
        p.catch_up()
        for item in st.CATALOGUE.values():
            if inv.stock(item.sku).exists:
                continue
            with contextlib.suppress(ConcurrencyError):  # someone else seeded it first
                seeded += p.append(st.stock_stream(item.sku), st.seed(item), "none").written
    return seeded


def create_app(settings: Settings, store: EventStore | None = None) -> FastAPI:
    es = store or open_event_store(settings)
    inv = st.Inventory()
    p = Participant(es, inv.apply, types=st.INVENTORY_EVENTS)
    seed_catalogue(p, inv)
    app = make_app(SERVICE, settings, ready_checks={"event_store": es.last_position},
                   description="Stock per SKU: reserve all lines or none, release, commit.")
    install_store_errors(app)
    install_faults(app, SERVICE, settings)

    def enforce(oid: str) -> None:
        """Make the SKU holds agree with the order's decision (idempotent)."""
        for s, ev in st.settle(inv, oid):
            p.append(st.stock_stream(s.sku), ev, s.version)

    def from_decision(endpoint: str, key: Key, r: st.Reservation) -> JSONResponse:
        enforce(r.order_id)
        if r.status in (st.RESERVED, st.COMMITTED):
            return p.answer(endpoint, key, 201, _reserved(r))
        if r.status == st.REJECTED:
            return p.answer(endpoint, key, 409, _short(r.order_id, r.shortage or {}))
        return p.refuse(endpoint, key, 409, "already_released",
                        f"the reservation of order {r.order_id} was released")

    @app.post("/api/inventory/reservations", status_code=201, tags=["inventory"],
              summary="Reserve every line of an order, or nothing (409 insufficient_stock)")
    def reserve(body: Reserve, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key, oid = Key.of(idempotency_key), body.order_id
        endpoint = f"reserve/{oid}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            if (r := inv.reservations.get(oid)) is not None:
                return from_decision(endpoint, key, r)
            try:
                lines = st.make_lines([ln.model_dump() for ln in body.lines])
                st.check_known(inv, lines)
            except st.StockRuleError as exc:
                status = 404 if exc.reason == "unknown_sku" else 409
                return p.refuse(endpoint, key, status, exc.reason, str(exc), **exc.details)
            short = st.shortage(inv, oid, lines)
            try:
                for sku, q in sorted(lines) if short is None else ():
                    s = inv.stock(sku)
                    if (ev := st.hold(s, oid, q)) is not None:
                        p.append(st.stock_stream(sku), ev, s.version)
            except st.StockRuleError as exc:  # another replica took the stock meanwhile
                short = exc.details
            if short is None:
                status, reply, decision = 201, _reserved((oid, lines)), st.made(oid, lines)
            else:
                status, reply = 409, _short(oid, short)
                decision = st.rejected(oid, lines, short)
            p.append(st.reservation_stream(oid),
                     p.with_reply(decision, endpoint, key, status, reply), "none")
            enforce(oid)
            return p.answer(endpoint, key, status, reply)

        return p.run(attempt)

    def release_(oid: str, key: Key) -> JSONResponse:
        endpoint = f"release/{oid}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            r = inv.reservation(oid)
            if r.status in (st.RELEASED, st.REJECTED):
                enforce(oid)
                return p.answer(endpoint, key, 200, _released(r))
            try:
                ev = st.released(r)
            except st.StockRuleError as exc:
                return p.refuse(endpoint, key, 409, exc.reason, str(exc))
            reply = _released(st.Reservation(oid, st.RELEASED, r.lines))
            p.append(st.reservation_stream(oid), p.with_reply(ev, endpoint, key, 200, reply),
                     r.version or "none")
            enforce(oid)
            return p.answer(endpoint, key, 200, reply)

        return p.run(attempt)

    @app.post("/api/inventory/reservations/{order_id}/release", tags=["inventory"],
              summary="Give the order's stock back (compensation; a no-op when nothing is held)")
    def release(order_id: OrderId, body: ReleaseBody | None = None,
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
        return release_(order_id, Key.of(idempotency_key))

    @app.post("/api/inventory/reservations/{order_id}/commit", tags=["inventory"],
              summary="The reserved stock leaves the warehouse (the order is confirmed)")
    def commit(order_id: OrderId, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key, endpoint = Key.of(idempotency_key), f"commit/{order_id}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            r = inv.reservation(order_id)
            reply = {"order_id": order_id, "status": st.COMMITTED,
                     "lines": st.lines_as_dicts(r.lines)}
            if r.status != st.COMMITTED:
                try:
                    ev = st.committed(r)
                except st.StockRuleError as exc:
                    return p.refuse(endpoint, key, 409, exc.reason, str(exc))
                p.append(st.reservation_stream(order_id),
                         p.with_reply(ev, endpoint, key, 200, reply), r.version)
            enforce(order_id)
            return p.answer(endpoint, key, 200, reply)

        return p.run(attempt)

    @app.get("/api/inventory", tags=["inventory"], summary="Stock of every SKU")
    def items() -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            return {"items": [s.as_dict() for _, s in sorted(inv.stocks.items()) if s.exists]}

    @app.get("/api/inventory/reservations/{order_id}", tags=["inventory"])
    def reservation(order_id: str) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            r = inv.reservations.get(order_id)
            if r is None:
                raise ApiError(404, "not_found", f"order {order_id!r} has no reservation")
            return r.as_dict()

    @app.get("/api/inventory/{sku}", tags=["inventory"])
    def item(sku: str) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            s = inv.stocks.get(sku)
            if s is None or not s.exists:
                raise ApiError(404, "not_found", f"sku {sku!r} is not in the catalogue")
            return s.as_dict()

    # Repair after a crash: holds left behind by a reservation that was decided otherwise.
    with p.lock:
        for oid in {oid for s in inv.stocks.values() for oid in s.holds}:
            enforce(oid)
    return app


if __name__ == "__main__":
    serve(SERVICE, create_app)
