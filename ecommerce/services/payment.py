"""payment-service: accounts, charges (customer -> merchant) and refunds (the compensation).

Streams `payment-<account_id>`. Money is integer cents and only ever moves between accounts in
one event, so the total over all accounts never changes (see `ecommerce.domain.payments`),
except through the admin command that funds an account (`/admin/...`, off unless
LABKIT_ADMIN_TOKEN is set; `ecommerce.services.admin`). A refund of a CONFIRMED order is
refused (409 `order_confirmed`), whoever asks (`ecommerce.domain.fate`). A charge pays for an
order of the shared log and nothing else: it must exist (404 `order_not_found`), be PENDING
(409 `order_not_pending`), and the account and amount must be its customer's and its total
(409 `account_mismatch`, `amount_mismatch`; `ecommerce.domain.payments.check_chargeable`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ecommerce.config import Settings
from ecommerce.domain import orders as o
from ecommerce.domain import payments as pay
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.fate import FATE_EVENTS, Fates, OrderFateError, check_withdrawable
from ecommerce.services.admin import ADMIN_PREFIX, admin_dependencies, admin_enabled
from ecommerce.services.app import ApiError, ErrorBody, IdempotencyKey, make_app, serve
from ecommerce.services.faults import install_faults
from ecommerce.services.participant import Key, Participant, install_store_errors
from ecommerce.store.base import EventStore, ExpectedVersion
from ecommerce.store.factory import open_event_store

SERVICE = "payment-service"
ID_PATTERN = o.ID_PATTERN  # the ids every participant takes in its URLs
Ident = Annotated[str, Field(pattern=ID_PATTERN, description="letters, digits, _ . : -")]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]


class OpenAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: Ident
    initial_balance: StrictInt = Field(
        0, ge=0, le=pay.MAX_AMOUNT,
        description="integer cents; only 0 here: money comes in through the admin command "
                    "POST /admin/payments/accounts/{account_id}/fund")


class Fund(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt = Field(ge=1, le=pay.MAX_AMOUNT, description="integer cents")


class Charge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: Ident
    account_id: Ident
    amount: StrictInt = Field(ge=1, le=pay.MAX_AMOUNT, description="integer cents")


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class Compensate(RefundBody):
    order_id: Ident


def _charged(p: pay.Payment) -> dict[str, Any]:
    return {"payment_id": p.payment_id, "order_id": p.order_id, "account_id": p.account_id,
            "status": pay.CHARGED, "amount": p.amount, "balance": p.balance_after}


def _refunded(p: pay.Payment | None, order_id: str) -> dict[str, Any]:
    if p is None or p.status == pay.VOIDED:
        return {"order_id": order_id, "status": pay.REFUNDED, "amount": 0, "account_id": None,
                "payment_id": None}
    return {"order_id": order_id, "status": pay.REFUNDED, "amount": p.amount,
            "account_id": p.account_id, "payment_id": p.payment_id}


def open_merchant(p: Participant, ledger: pay.Ledger) -> None:
    with p.lock:
        if not p.start():  # stopped at an unreadable event: it says so (503, /readyz)
            return
        ev = pay.open_account(ledger, pay.MERCHANT, 0)
        if ev is not None:  # fixed id: two replicas starting together open it once
            p.append(pay.stream_id(pay.MERCHANT), ev, "any")


def create_app(settings: Settings, store: EventStore | None = None) -> FastAPI:
    es = store or open_event_store(settings)
    ledger = pay.Ledger()
    fates = Fates()
    payable = pay.Payable()

    def fold(e: RecordedEvent) -> None:
        fates.apply(e)
        payable.apply(e)
        if e.stream_id.startswith(pay.STREAM_PREFIX):
            ledger.apply(e)

    p = Participant(es, fold, types=list(dict.fromkeys(
        [*pay.PAYMENT_EVENTS, *FATE_EVENTS, *pay.ORDER_TERMS_EVENTS])))
    open_merchant(p, ledger)
    app = make_app(SERVICE, settings, ready_checks={"event_store": es.last_position,
                                                    "events": p.ready},
                   description="Accounts, charges and refunds. Money in integer cents; the total "
                               "over all accounts never changes.")
    install_store_errors(app)
    faults = install_faults(app, SERVICE, settings, decline=True)

    def rule(endpoint: str, key: Key, exc: pay.PaymentRuleError) -> JSONResponse:
        status = 404 if exc.reason in ("not_found", "order_not_found") else 409
        return p.refuse(endpoint, key, status, exc.reason, str(exc))

    @app.post("/api/payments/accounts", status_code=201, tags=["accounts"],
              summary="Open an account (idempotent: 200 when it is open already)",
              responses={403: {"model": ErrorBody, "description": "initial_balance > 0: "
                               "money comes in only through the admin command (`admin_only`)"}})
    def open_account(body: OpenAccount, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key, endpoint = Key.of(idempotency_key, body.model_dump()), f"open/{body.account_id}"
        if body.initial_balance:
            raise ApiError(403, "admin_only",
                           "an account opens with initial_balance 0: money comes in only through "
                           "the admin command POST /admin/payments/accounts/{account_id}/fund "
                           "(not routed by the gateway; needs the lab's admin token)")

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            try:
                ev = pay.open_account(ledger, body.account_id, body.initial_balance)
            except pay.PaymentRuleError as exc:
                return rule(endpoint, key, exc)
            if ev is None:
                return p.answer(endpoint, key, 200, ledger.account(body.account_id).as_dict())
            version = ledger.account(body.account_id).version
            reply = pay.Account(body.account_id, body.initial_balance, body.initial_balance,
                                True, version + 1).as_dict()
            if not p.append(pay.stream_id(body.account_id),
                            p.with_reply(ev, endpoint, key, 201, reply), version).written:
                return attempt()  # opened concurrently elsewhere: answer from the state
            return p.answer(endpoint, key, 201, reply)

        return p.run(attempt)

    @app.get("/api/payments/accounts", tags=["accounts"],
             summary="Every account; total_balance never changes except by opening accounts")
    def accounts() -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            found = [a.as_dict() for _, a in sorted(ledger.accounts.items()) if a.opened]
        return {"accounts": found, "total": len(found),
                "total_balance": sum(a["balance"] for a in found)}

    @app.get("/api/payments/accounts/{account_id}", tags=["accounts"])
    def account(account_id: str) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            acct = ledger.accounts.get(account_id)
            if acct is None or not acct.opened:
                raise ApiError(404, "not_found", f"account {account_id!r} does not exist")
            return acct.as_dict()

    @app.post("/api/payments", status_code=201, tags=["payments"],
              summary="Charge an order to its customer's account (409 declined when the "
                      "balance is short)",
              responses={
                  404: {"model": ErrorBody, "description": "`order_not_found`: no such order in "
                        "the log; `not_found`: no such account"},
                  409: {"model": ErrorBody, "description": "`declined`; `order_not_pending`: "
                        "the order is confirmed, cancelled or withdrawn; `account_mismatch`: "
                        "not the order's customer; `amount_mismatch`: not the order's total; "
                        "`already_charged`, `already_refunded`"}})
    def charge(body: Charge, request: Request,
               idempotency_key: IdempotencyKey = None) -> JSONResponse:
        key, oid = Key.of(idempotency_key, body.model_dump()), body.order_id
        endpoint = f"charge/{oid}"
        injected: list[str | None] = []

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            if oid not in ledger.payments:  # a new charge: it must pay for the order as placed
                try:
                    pay.check_chargeable(payable, oid, body.account_id, body.amount,
                                         withdrawn=oid in fates.withdrawn)
                except pay.PaymentRuleError as exc:
                    return rule(endpoint, key, exc)
            if not injected:  # an armed decline fault is used up by a new charge only
                fresh = oid not in ledger.payments
                fired = fresh and faults.take(("decline",), request.url.path) is not None
                injected.append("injected_decline" if fired else None)
            try:
                ev = pay.charge(ledger, oid, body.account_id, body.amount, attempt=key.value,
                                decline=injected[0])
            except pay.PaymentRuleError as exc:
                return rule(endpoint, key, exc)
            if ev is None:  # charged already (another key, or a lost reply)
                return p.answer(endpoint, key, 201, _charged(ledger.payments[oid]))
            d = ev.data
            if ev.type == pay.PAYMENT_DECLINED:
                status, reply = 409, {
                    "detail": f"payment declined ({d['reason']}): {d['amount']} asked, balance "
                              f"{d['balance']}", "reason": "declined", "cause": d["reason"],
                    "order_id": oid, "account_id": body.account_id, "amount": d["amount"],
                    "balance": d["balance"]}
            else:
                status, reply = 201, _charged(pay.Payment(oid, pay.CHARGED, body.account_id,
                                                          d["amount"], d["payment_id"],
                                                          d["balance_after"]))
            version = ledger.account(body.account_id).version
            if not p.append(pay.stream_id(body.account_id),
                            p.with_reply(ev, endpoint, key, status, reply), version).written:
                return attempt()  # the same event was stored concurrently: answer from the state
            return p.answer(endpoint, key, status, reply)

        return p.run(attempt)

    def refund_(oid: str, key: Key) -> JSONResponse:
        endpoint = f"refund/{oid}"

        def attempt() -> JSONResponse:
            if (hit := p.replay(endpoint, key)) is not None:
                return hit
            todo = pay.refund(ledger, oid)
            if todo is None:
                return p.answer(endpoint, key, 200, _refunded(ledger.payments.get(oid), oid))
            try:  # never once the order is confirmed; else claim its fate (domain.fate)
                claim = check_withdrawable(fates, oid, "payment")
            except OrderFateError as exc:
                return p.refuse(endpoint, key, 409, exc.reason, str(exc))
            account_id, ev = todo
            expected: ExpectedVersion
            if ev.type == pay.PAYMENT_VOIDED:
                # The merchant's stream: its id (the charge's) is the guard, not the version.
                reply, expected = _refunded(None, oid), "any"
            else:
                charged = ledger.payments[oid]
                reply = _refunded(charged, oid)
                expected = ledger.account(account_id).version
            batch = [p.with_reply(ev, endpoint, key, 200, reply), *([claim] if claim else [])]
            if not p.append(pay.stream_id(account_id), batch, expected).written:
                return attempt()
            return p.answer(endpoint, key, 200, reply)

        return p.run(attempt)

    @app.post("/api/payments/compensate", tags=["payments"],
              summary="The course's name for a refund")
    def compensate(body: Compensate, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        return refund_(body.order_id, Key.of(idempotency_key, body.model_dump()))

    @app.post("/api/payments/{order_id}/refund", tags=["payments"],
              summary="Give an order's money back (compensation; a no-op when never charged)")
    def refund(order_id: OrderId, body: RefundBody | None = None,
               idempotency_key: IdempotencyKey = None) -> JSONResponse:
        request = {"order_id": order_id, **(body or RefundBody()).model_dump()}
        return refund_(order_id, Key.of(idempotency_key, request))

    if admin_enabled(settings):
        @app.post(ADMIN_PREFIX + "/payments/accounts/{account_id}/fund", status_code=201,
                  tags=["admin"], dependencies=admin_dependencies(settings),
                  summary="Admin: put money into an account (opens it if needed)")
        def fund(account_id: OrderId, body: Fund,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
            key = Key.of(idempotency_key, {"account_id": account_id, **body.model_dump()})
            endpoint = f"fund/{account_id}"

            def attempt() -> JSONResponse:
                if (hit := p.replay(endpoint, key)) is not None:
                    return hit
                try:
                    events = pay.fund(ledger, account_id, body.amount, ident=key.value)
                except pay.PaymentRuleError as exc:
                    return rule(endpoint, key, exc)
                acct = ledger.account(account_id)
                reply = {**acct.as_dict(), "balance": acct.balance + body.amount,
                         "funded": acct.funded + body.amount,
                         "version": acct.version + len(events), "amount": body.amount}
                events[-1] = p.with_reply(events[-1], endpoint, key, 201, reply, admin=True)
                if not p.append(pay.stream_id(account_id), events, acct.version).written:
                    return p.answer(endpoint, key, 201, {**ledger.account(account_id).as_dict(),
                                                         "amount": body.amount})
                return p.answer(endpoint, key, 201, reply)

            return p.run(attempt)

    @app.get("/api/payments", tags=["payments"], summary="Every order's payment")
    def payments() -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            found = [x.as_dict() for x in ledger.payments.values()]
        return {"payments": found, "total": len(found), "declined": ledger.declined}

    @app.get("/api/payments/{order_id}", tags=["payments"])
    def payment(order_id: str) -> dict[str, Any]:
        with p.lock:
            p.catch_up()
            found = ledger.payments.get(order_id)
            if found is None:
                raise ApiError(404, "not_found", f"order {order_id!r} has no payment")
            return found.as_dict()

    return app


if __name__ == "__main__":
    serve(SERVICE, create_app)
