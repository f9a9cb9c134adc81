"""inventory-service: stock per SKU; reserves all of an order's lines or none; releases them.

Streams `stock-<sku>` (guarded by expected version: no oversell) and `reservation-<order_id>`
(the decision, first writer wins). See `ecommerce.domain.stock` for why that is enough.

A CONFIRMED order's reservation becomes a sale (`ReservationCommitted`, the units leave as
`sold`) as soon as this service sees the confirmation, and a release of it is refused (409
`order_confirmed`, `ecommerce.domain.fate`). Stock is held for an order of the shared log and
sold for a confirmed one, whoever calls: a new reservation needs the order to exist (404
`order_not_found`), be PENDING (409 `order_not_pending`) and have exactly these lines (409
`lines_mismatch`); a manual commit needs it CONFIRMED (409 `order_not_confirmed`;
`ecommerce.domain.stock.check_reservable`, `check_committable`). Restocking is an admin command (`/admin/...`,
off unless LABKIT_ADMIN_TOKEN is set).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Annotated, Any

from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ecommerce.config import Settings
from ecommerce.domain import orders as o
from ecommerce.domain import stock as st
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.fate import (
    FATE_EVENTS,
    ORDER_CONFIRMED,
    Fates,
    OrderFateError,
    check_withdrawable,
)
from ecommerce.services.admin import ADMIN_PREFIX, admin_dependencies, admin_enabled
from ecommerce.services.app import ApiError, ErrorBody, IdempotencyKey, make_app, serve
from ecommerce.services.faults import install_faults
from ecommerce.services.participant import Key, Participant, install_store_errors
from ecommerce.store.base import ConcurrencyError, DuplicateEventError, EventStore
from ecommerce.store.factory import open_event_store

SERVICE = "inventory-service"
ID_PATTERN = o.ID_PATTERN  # the ids every participant takes in its URLs
Ident = Annotated[str, Field(pattern=ID_PATTERN, description="letters, digits, _ . : -")]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]


#: Seconds between two looks for confirmed orders whose reservation is still open.
SETTLE_EVERY = 0.5


class ReserveLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Ident
    quantity: StrictInt = Field(ge=1, le=st.MAX_QUANTITY)


class Reserve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: Ident
    lines: list[ReserveLine] = Field(min_length=1, max_length=st.MAX_LINES)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class Restock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: StrictInt = Field(ge=1, le=st.MAX_QUANTITY)


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
        if not p.start():  # stopped at an unreadable event: it says so (503, /readyz)
            return 0
        for item in st.CATALOGUE.values():
            if inv.stock(item.sku).exists:
                continue
            with contextlib.suppress(ConcurrencyError):  # someone else seeded it first
                seeded += p.append(st.stock_stream(item.sku), st.seed(item), "none").written
    return seeded


def create_app(settings: Settings, store: EventStore | None = None) -> FastAPI:
    es = store or open_event_store(settings)
    inv = st.Inventory()
    fates = Fates()
    #: The orders of the log: what a reservation or a commit is checked against.
    book = o.OrderBook()
    #: Confirmed orders whose reservation may still be open (turned into sales by `settle`).
    to_commit: set[str] = set()

    def fold(e: RecordedEvent) -> None:
        fates.apply(e)
        book.apply(e)
        if e.type in st.INVENTORY_EVENTS:
            inv.apply(e)
        elif e.stream_id.startswith(st.RESERVATION_PREFIX):  # a fate claim: the version moves
            r = inv.reservations.get(e.stream_id[len(st.RESERVATION_PREFIX):])
            if r is not None:
                r.version = e.version
        if e.type == ORDER_CONFIRMED:
            to_commit.add(e.data["order_id"])

    p = Participant(es, fold, types=list(dict.fromkeys(
        [*st.INVENTORY_EVENTS, *FATE_EVENTS, *o.ORDER_EVENTS])))
    seed_catalogue(p, inv)
    app = make_app(SERVICE, settings, ready_checks={"event_store": es.last_position,
                                                    "events": p.ready},
                   description="Stock per SKU: reserve all lines or none, release, commit.")
    install_store_errors(app)
    install_faults(app, SERVICE, settings)

    def enforce(oid: str) -> None:
        """Make the SKU holds agree with the order's decision (idempotent)."""
        for s, ev in st.settle(inv, oid):
            p.append(st.stock_stream(s.sku), ev, s.version)

    def settle() -> int:
        """Turn the reservations of confirmed orders into sales (idempotent); how many.

        The lock is taken per order, not for the whole batch: requests wait for one order's
        two appends at most, never for a backlog of them."""
        done = 0
        with p.lock:
            p.catch_up()
            pending = sorted(to_commit)
        for oid in pending:
            with p.lock:
                r = inv.reservations.get(oid)
                if r is not None and r.status == st.RESERVED:
                    with contextlib.suppress(ConcurrencyError, DuplicateEventError):
                        p.append(st.reservation_stream(oid), st.committed(r), r.version)
                        done += 1
                if r is not None and r.status == st.RESERVED:
                    continue  # another replica moved it: next time
                enforce(oid)
                to_commit.discard(oid)
        return done

    stop = threading.Event()

    def settle_forever() -> None:
        log = logging.getLogger(SERVICE)
        while not stop.wait(SETTLE_EVERY):
            try:
                settle()
            except Exception as exc:  # the store may be away for a while: try again later
                log.warning("settling confirmed orders failed: %s", exc)

    app.state.settle = settle
    app.router.on_startup.append(
        lambda: threading.Thread(target=settle_forever, name="settle", daemon=True).start())
    app.router.on_shutdown.append(stop.set)

    def from_decision(endpoint: str, key: Key, r: st.Reservation) -> JSONResponse:
        enforce(r.order_id)
        if r.status in (st.RESERVED, st.COMMITTED):
            return p.answer(endpoint, key, 201, _reserved(r))
        if r.status == st.REJECTED:
            return p.answer(endpoint, key, 409, _short(r.order_id, r.shortage or {}))
        return p.refuse(endpoint, key, 409, "already_released",
                        f"the reservation of order {r.order_id} was released")

    @app.post("/api/inventory/reservations", status_code=201, tags=["inventory"],
              summary="Reserve every line of an order, or nothing (409 insufficient_stock)",
              responses={
                  404: {"model": ErrorBody, "description": "`order_not_found`: no such order in "
                        "the log; `unknown_sku`"},
                  409: {"model": ErrorBody, "description": "`insufficient_stock`; "
                        "`order_not_pending`: the order is confirmed, cancelled or withdrawn; "
                        "`lines_mismatch`: not the order's lines; `already_released`"}})
    def reserve(body: Reserve, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key, oid = Key.of(idempotency_key, body.model_dump()), body.order_id
        endpoint = f"reserve/{oid}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            # A decided order answers its decision, whatever the order became since (a retry of
            # a reservation made while it was PENDING still gets its 201 once it is CONFIRMED).
            if (r := inv.reservations.get(oid)) is not None:
                return from_decision(endpoint, key, r)
            try:
                lines = st.make_lines([ln.model_dump() for ln in body.lines])
                st.check_known(inv, lines)
                # A new reservation: for an order of the log, PENDING, exactly its lines.
                st.check_reservable(book, oid, lines, withdrawn=oid in fates.withdrawn)
            except st.StockRuleError as exc:
                status = 404 if exc.reason in ("unknown_sku", "order_not_found") else 409
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
                # Never once the order is confirmed; else claim its fate (domain.fate).
                claim = check_withdrawable(fates, oid, "stock reservation")
            except (st.StockRuleError, OrderFateError) as exc:
                return p.refuse(endpoint, key, 409, exc.reason, str(exc))
            reply = _released(st.Reservation(oid, st.RELEASED, r.lines))
            batch = [p.with_reply(ev, endpoint, key, 200, reply), *([claim] if claim else [])]
            p.append(st.reservation_stream(oid), batch, r.version or "none")
            enforce(oid)
            return p.answer(endpoint, key, 200, reply)

        return p.run(attempt)

    @app.post("/api/inventory/reservations/{order_id}/release", tags=["inventory"],
              summary="Give the order's stock back (compensation; a no-op when nothing is held)")
    def release(order_id: OrderId, body: ReleaseBody | None = None,
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
        request = {"order_id": order_id, **(body or ReleaseBody()).model_dump()}
        return release_(order_id, Key.of(idempotency_key, request))

    @app.post("/api/inventory/reservations/{order_id}/commit", tags=["inventory"],
              summary="The reserved stock leaves the warehouse (the order is confirmed)",
              responses={409: {"model": ErrorBody, "description": "`order_not_confirmed`: the "
                               "order is not CONFIRMED in the log; `not_reserved`"}})
    def commit(order_id: OrderId, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key = Key.of(idempotency_key, {"order_id": order_id})
        endpoint = f"commit/{order_id}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            try:  # only a CONFIRMED order's stock is sold, whoever asks
                st.check_committable(book, order_id)
            except st.StockRuleError as exc:
                return p.refuse(endpoint, key, 409, exc.reason, str(exc))
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

    if admin_enabled(settings):
        @app.post(ADMIN_PREFIX + "/inventory/{sku}/restock", status_code=201, tags=["admin"],
                  dependencies=admin_dependencies(settings),
                  summary="Admin: more units of a SKU into the warehouse")
        def restock(sku: OrderId, body: Restock,
                    idempotency_key: IdempotencyKey = None) -> JSONResponse:
            key = Key.of(idempotency_key, {"sku": sku, **body.model_dump()})
            endpoint = f"restock/{sku}"

            def attempt() -> JSONResponse:
                if (hit := p.replay(endpoint, key)) is not None:
                    return hit
                s = inv.stock(sku)
                try:
                    ev = st.restock(s, body.quantity, ident=key.value)
                except st.StockRuleError as exc:
                    status = 404 if exc.reason == "unknown_sku" else 422
                    return p.refuse(endpoint, key, status, exc.reason, str(exc))
                reply = {**s.as_dict(), "available": s.available + body.quantity,
                         "initial": s.initial + body.quantity, "version": s.version + 1,
                         "restocked": body.quantity}
                if not p.append(st.stock_stream(sku), p.with_reply(ev, endpoint, key, 201, reply,
                                                                   admin=True), s.version).written:
                    return p.answer(endpoint, key, 201, {**inv.stock(sku).as_dict(),
                                                         "restocked": body.quantity})
                return p.answer(endpoint, key, 201, reply)

            return p.run(attempt)

    @app.get("/api/inventory", tags=["inventory"], summary="Stock of every SKU")
    def items() -> dict[str, Any]:
        with p.lock:
            settle()
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
