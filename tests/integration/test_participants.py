"""The four saga participants as real processes: what a student (or the saga) would notice.

Money is conserved, stock is never oversold, a retried request gets its first answer and
changes nothing, compensations are no-ops when there is nothing to undo, and faults do what
they say. The `backend` tests run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ecommerce.domain import orders as o
from ecommerce.domain import payments as pay
from ecommerce.domain import stock as st
from ecommerce.services import inventory as inv_service
from ecommerce.services.faults import CRASH_EXIT_CODE
from ecommerce.store.base import EventStore
from ecommerce.store.postgres_events import PostgresEventStore
from ecommerce.store.sqlite_events import SqliteEventStore
from labkit.ops.fault_client import FaultError, Faults
from tests.integration import service_proc
from tests.integration.service_proc import ADMIN, ADMIN_TOKEN, ServiceProc, Services, fund
from tests.waiting import wait_until

services = service_proc.services  # the fixture: real subprocesses, stopped after each test

Backend = tuple[str, str] | None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """None (SQLite files under tmp_path) or (PostgreSQL url, fresh schema)."""
    return request.getfixturevalue("pg_schema") if request.param == "postgres" else None


def store_of(services: Services, pg: Backend) -> EventStore:
    if pg is not None:
        return PostgresEventStore(pg[0], schema=pg[1])
    return SqliteEventStore(services.data_dir / "events.db")


def post(svc: ServiceProc, path: str, body: dict[str, Any] | None = None,
         key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return svc.client.post(path, json=body, headers=headers)


def parallel(calls: list, workers: int = 16) -> list[httpx.Response]:
    """Run the zero-argument calls at the same time."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda f: f(), calls))


def stock_of(svc: ServiceProc, sku: str) -> dict[str, Any]:
    r = svc.client.get(f"/api/inventory/{sku}")
    assert r.status_code == 200, r.text
    return r.json()


def back_order(es: EventStore, oid: str, user: str, total: int,
               lines: list[dict[str, Any]]) -> None:
    """Record what payment- and inventory-service record for an order before the saga's pivot
    (its charge and its reservation), for tests that run order-service alone."""
    from ecommerce.domain.events import NewEvent

    es.append(pay.stream_id(user), [NewEvent(pay.PAYMENT_CHARGED, {
        "order_id": oid, "account_id": user, "amount": total})], "any")
    es.append(st.reservation_stream(oid), [st.made(oid, st.make_lines(lines))], "none")


def conserved(item: dict[str, Any]) -> None:
    assert item["available"] >= 0 and item["reserved"] >= 0
    assert item["available"] + item["reserved"] + item["sold"] == item["initial"]


# -- order-service ----------------------------------------------------------------------------


def test_order_lifecycle_and_replayed_requests(services: Services, backend: Backend) -> None:
    orders = services.start("order-service", pg=backend)
    body = {"order_id": "o-1", "saga_id": "s-1", "user_id": "alice",
            "lines": [{"sku": "MOUSE-WL", "quantity": 3}, {"sku": "LAPTOP-14", "quantity": 1}]}
    first = post(orders, "/api/orders", body, key="s-1:create_order")
    assert first.status_code == 201, first.text
    # The catalogue's prices: 3 x 2,500 + 129,900.
    assert first.json()["status"] == "PENDING" and first.json()["total"] == 137_400
    again = post(orders, "/api/orders", body, key="s-1:create_order")
    assert (again.status_code, again.json()) == (201, first.json())
    other_key = post(orders, "/api/orders", body, key="someone-else")
    assert (other_key.status_code, other_key.json()["reason"]) == (409, "already_exists")

    with store_of(services, backend) as es:  # what the saga's steps before the pivot record
        back_order(es, "o-1", "alice", 137_400, body["lines"])
    confirmed = post(orders, "/api/orders/o-1/confirm", {}, key="s-1:confirm_order")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "CONFIRMED"
    assert post(orders, "/api/orders/o-1/confirm", {}, key="s-1:confirm_order").json() == \
        confirmed.json()
    refused = post(orders, "/api/orders/o-1/cancel", {"reason": "late"}, key="s-1:cancel_order")
    assert refused.status_code == 409 and refused.json()["reason"] == "already_confirmed"

    post(orders, "/api/orders", {**body, "order_id": "o-2", "saga_id": "s-2"})
    cancelled = post(orders, "/api/orders/compensate", {"order_id": "o-2", "reason": "declined"})
    assert cancelled.json()["status"] == "CANCELLED" and cancelled.json()["reason"] == "declined"
    assert post(orders, "/api/orders/o-2/cancel").status_code == 200  # no-op
    assert post(orders, "/api/orders/o-2/confirm").json()["reason"] == "not_pending"

    listed = orders.client.get("/api/orders").json()
    assert listed["total"] == 2
    assert {o["order_id"]: o["status"] for o in listed["orders"]} == {
        "o-1": "CONFIRMED", "o-2": "CANCELLED"}
    assert orders.client.get("/api/orders", params={"status": "CANCELLED"}).json()["total"] == 1
    with store_of(services, backend) as es:  # the replays appended nothing
        assert [e.type for e in es.read_stream("order-o-1")] == ["OrderPlaced", "OrderConfirmed"]
        assert [e.type for e in es.read_stream("order-o-2")] == ["OrderPlaced", "OrderCancelled"]
        placed, confirmed_at = (e.recorded_iso for e in es.read_stream("order-o-1"))
    # The order shows the times the log recorded (from the appends' answers), as it will after
    # a restart folds the log again.
    shown = orders.client.get("/api/orders/o-1").json()
    assert (shown["created_at"], shown["updated_at"]) == (placed, confirmed_at)
    orders.restart()
    again_shown = orders.client.get("/api/orders/o-1").json()
    assert (again_shown["created_at"], again_shown["updated_at"]) == (placed, confirmed_at)


def test_order_without_id_gets_one_per_idempotency_key(services: Services) -> None:
    orders = services.start("order-service")
    body = {"user_id": "bob", "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}
    a = post(orders, "/api/orders", body, key="k-a").json()
    assert post(orders, "/api/orders", body, key="k-a").json()["order_id"] == a["order_id"]
    assert post(orders, "/api/orders", body, key="k-b").json()["order_id"] != a["order_id"]


def test_order_errors_are_field_level_and_not_found(services: Services) -> None:
    orders = services.start("order-service")
    bad = post(orders, "/api/orders", {"user_id": "u", "lines": [
        {"sku": "A", "quantity": 1.5}]})
    assert bad.status_code == 422
    assert any(e["field"] == "lines.0.quantity" for e in bad.json()["errors"])
    unknown = post(orders, "/api/orders", {"user_id": "u", "lines": [{"sku": "A", "quantity": 1}]})
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_sku")
    assert orders.client.get("/api/orders/nope").status_code == 404
    assert post(orders, "/api/orders/nope/confirm").json()["reason"] == "not_found"
    assert post(orders, "/api/orders/nope/cancel").status_code == 404


# -- inventory-service ------------------------------------------------------------------------


def place_lines(services: Services, orders: dict[str, list[dict[str, Any]]],
                backend: Backend = None) -> None:
    """Place orders with these lines (`{"sku", "quantity"}`) in the shared log as order-service
    does, at the catalogue's prices: inventory-service reserves stock only for such an order."""
    with store_of(services, backend) as es:
        for oid, lines in orders.items():
            priced = [{**ln, "price": st.CATALOGUE[ln["sku"]].price} for ln in lines]
            es.append(o.stream_id(oid), [o.place(o.Order(oid), "alice", priced)], "none")


def reserve_body(services: Services, oid: str, lines: list[dict[str, Any]],
                 backend: Backend = None) -> dict[str, Any]:
    """The order placed with these lines, and the body of its reservation."""
    place_lines(services, {oid: lines}, backend)
    return {"order_id": oid, "lines": lines}


def decide(services: Services, oid: str, status: str, backend: Backend = None) -> None:
    """Confirm or cancel a placed order in the log, as order-service does."""
    with store_of(services, backend) as es:
        order = o.fold(oid, es.read_stream(o.stream_id(oid)))
        ev = o.confirm(order) if status == o.CONFIRMED else o.cancel(order, "test")
        assert ev is not None
        es.append(o.stream_id(oid), [ev], order.version)


def everything(inv: ServiceProc) -> dict[str, dict[str, Any]]:
    return {i["sku"]: i for i in inv.client.get("/api/inventory").json()["items"]}


def test_reservation_is_all_or_nothing_and_a_retry_gets_the_first_answer(
        services: Services) -> None:
    inv = services.start("inventory-service")
    items = {i["sku"]: i for i in inv.client.get("/api/inventory").json()["items"]}
    assert set(items) == set(st.CATALOGUE)
    headset = st.CATALOGUE["HEADSET-BT"].initial
    too_many = reserve_body(services, "o-1", [{"sku": "MOUSE-WL", "quantity": 2},
                                              {"sku": "HEADSET-BT", "quantity": headset + 1}])
    refused = post(inv, "/api/inventory/reservations", too_many, key="s-1:reserve_stock")
    assert refused.status_code == 409
    assert refused.json()["reason"] == "insufficient_stock"
    assert refused.json()["sku"] == "HEADSET-BT"
    assert stock_of(inv, "MOUSE-WL")["reserved"] == 0  # nothing stays reserved

    ok = reserve_body(services, "o-2", [{"sku": "HEADSET-BT", "quantity": headset}])
    reserved = post(inv, "/api/inventory/reservations", ok, key="s-2:reserve_stock")
    assert (reserved.status_code, reserved.json()["status"]) == (201, "RESERVED")
    assert stock_of(inv, "HEADSET-BT")["available"] == 0
    # The stock changed since: the first request's retry still gets its first answer.
    post(inv, "/api/inventory/reservations/o-2/release", key="s-2:release_stock")
    retry = post(inv, "/api/inventory/reservations", too_many, key="s-1:reserve_stock")
    assert (retry.status_code, retry.json()) == (409, refused.json())
    assert post(inv, "/api/inventory/reservations", ok, key="s-2:reserve_stock").json() == \
        reserved.json()
    assert stock_of(inv, "HEADSET-BT")["available"] == headset

    # The SKU is checked against the catalogue before the lines against the order.
    place_lines(services, {"o-3": [{"sku": "MOUSE-WL", "quantity": 1}]})
    unknown = post(inv, "/api/inventory/reservations",
                   {"order_id": "o-3", "lines": [{"sku": "NOPE", "quantity": 1}]})
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_sku")
    assert inv.client.get("/api/inventory/NOPE").status_code == 404


def test_release_is_the_compensation_and_a_noop_when_nothing_is_held(services: Services) -> None:
    inv = services.start("inventory-service")
    before = stock_of(inv, "MONITOR-27")
    post(inv, "/api/inventory/reservations",
         reserve_body(services, "o-1", [{"sku": "MONITOR-27", "quantity": 4}]))
    assert stock_of(inv, "MONITOR-27")["reserved"] == 4
    first = post(inv, "/api/inventory/reservations/o-1/release", {})
    assert first.status_code == 200 and first.json()["status"] == "RELEASED"
    assert post(inv, "/api/inventory/reservations/o-1/release").status_code == 200
    after = stock_of(inv, "MONITOR-27")
    assert (after["available"], after["reserved"]) == (before["available"], 0)

    # A release that overtakes its slow reservation: the late reserve takes nothing.
    late_body = reserve_body(services, "o-late", [{"sku": "MONITOR-27", "quantity": 1}])
    assert post(inv, "/api/inventory/reservations/o-late/release").status_code == 200
    late = post(inv, "/api/inventory/reservations", late_body)
    assert (late.status_code, late.json()["reason"]) == (409, "already_released")
    assert stock_of(inv, "MONITOR-27")["reserved"] == 0

    post(inv, "/api/inventory/reservations",
         reserve_body(services, "o-2", [{"sku": "MONITOR-27", "quantity": 2}]))
    decide(services, "o-2", o.CONFIRMED)  # the stock of a confirmed order is sold
    assert post(inv, "/api/inventory/reservations/o-2/commit").json()["status"] == "COMMITTED"
    shipped = stock_of(inv, "MONITOR-27")
    assert (shipped["sold"], shipped["reserved"]) == (2, 0)
    conserved(shipped)
    assert post(inv, "/api/inventory/reservations/o-2/release").json()["reason"] == \
        "already_committed"


def test_no_stock_is_held_or_sold_for_an_order_nobody_placed(services: Services,
                                                              backend: Backend) -> None:
    """The hole found on a running lab: a reservation, then a commit, for an order nobody
    placed sold the last headsets, and real orders then failed with insufficient_stock."""
    inv = services.start("inventory-service", pg=backend)
    before = everything(inv)
    ghost = {"order_id": "o-inv-1", "lines": [{"sku": "HEADSET-BT", "quantity": 2}]}
    r = post(inv, "/api/inventory/reservations", ghost, key="k-ghost")
    assert (r.status_code, r.json()["reason"]) == (404, "order_not_found"), r.text
    assert "placed first" in r.json()["detail"] and "POST /api/orders" in r.json()["detail"]
    assert post(inv, "/api/inventory/reservations", ghost, key="k-ghost").json() == r.json()
    c = post(inv, "/api/inventory/reservations/o-inv-1/commit")
    assert (c.status_code, c.json()["reason"]) == (409, "order_not_confirmed"), c.text
    assert inv.client.get("/api/inventory/reservations/o-inv-1").status_code == 404
    assert everything(inv) == before  # nothing was held, nothing sold
    # The order placed afterwards gets its headsets.
    place_lines(services, {"o-inv-2": [{"sku": "HEADSET-BT", "quantity": 3}]}, backend)
    r = post(inv, "/api/inventory/reservations",
             {"order_id": "o-inv-2", "lines": [{"sku": "HEADSET-BT", "quantity": 3}]})
    assert (r.status_code, r.json()["status"]) == (201, "RESERVED"), r.text


def test_a_reservation_is_for_a_pending_order_and_exactly_its_lines(services: Services) -> None:
    inv = services.start("inventory-service")
    before = everything(inv)
    lines = [{"sku": "HEADSET-BT", "quantity": 1}, {"sku": "MOUSE-WL", "quantity": 2}]
    place_lines(services, {"o-real": lines, "o-cancelled": lines, "o-confirmed": lines})
    decide(services, "o-cancelled", o.CANCELLED)
    decide(services, "o-confirmed", o.CONFIRMED)
    for wrong in ([{"sku": "HEADSET-BT", "quantity": 3}],  # the order's SKU, not its lines
                  [*lines, {"sku": "KEYBOARD-MX", "quantity": 1}],
                  [{"sku": "HEADSET-BT", "quantity": 2}, {"sku": "MOUSE-WL", "quantity": 2}],
                  [{"sku": "KEYBOARD-MX", "quantity": 1}]):
        r = post(inv, "/api/inventory/reservations", {"order_id": "o-real", "lines": wrong})
        assert (r.status_code, r.json()["reason"]) == (409, "lines_mismatch"), r.text
        assert "holds 1 x HEADSET-BT, 2 x MOUSE-WL" in r.json()["detail"]
        assert r.json()["order_lines"] == lines
    for oid, status in (("o-cancelled", o.CANCELLED), ("o-confirmed", o.CONFIRMED)):
        r = post(inv, "/api/inventory/reservations", {"order_id": oid, "lines": lines})
        assert (r.status_code, r.json()["reason"]) == (409, "order_not_pending"), r.text
        assert status in r.json()["detail"]
    assert everything(inv) == before  # nothing was held, nothing sold
    with store_of(services, None) as es:
        assert not es.read_all(0, 10_000, types=[*st.RESERVATION_EVENTS, st.STOCK_RESERVED])
    # Its own lines, in any order: reserved.
    r = post(inv, "/api/inventory/reservations", {"order_id": "o-real", "lines": lines[::-1]})
    assert (r.status_code, r.json()["status"]) == (201, "RESERVED"), r.text
    assert stock_of(inv, "MOUSE-WL")["reserved"] == 2


def test_stock_is_sold_only_for_a_confirmed_order(services: Services, backend: Backend) -> None:
    inv = services.start("inventory-service", pg=backend)
    lines = [{"sku": "HEADSET-BT", "quantity": 1}, {"sku": "MOUSE-WL", "quantity": 2}]
    body = reserve_body(services, "o-real", lines, backend)
    reserved = post(inv, "/api/inventory/reservations", body, key="s-real:reserve_stock")
    assert (reserved.status_code, reserved.json()["status"]) == (201, "RESERVED"), reserved.text
    c = post(inv, "/api/inventory/reservations/o-real/commit", key="k-commit")
    assert (c.status_code, c.json()["reason"]) == (409, "order_not_confirmed"), c.text
    assert "only for a CONFIRMED order" in c.json()["detail"]
    time.sleep(2 * inv_service.SETTLE_EVERY)  # the settling loop does not sell it either
    held = stock_of(inv, "HEADSET-BT")
    assert (held["reserved"], held["sold"]) == (1, 0)
    assert inv.client.get("/api/inventory/reservations/o-real").json()["status"] == st.RESERVED

    decide(services, "o-real", o.CONFIRMED, backend)
    # A retry of the reservation made while the order was PENDING still gets its 201.
    again = post(inv, "/api/inventory/reservations", body, key="s-real:reserve_stock")
    assert (again.status_code, again.json()) == (201, reserved.json())
    assert post(inv, "/api/inventory/reservations", body).status_code == 201
    c = post(inv, "/api/inventory/reservations/o-real/commit")
    assert (c.status_code, c.json()["status"]) == (200, "COMMITTED"), c.text
    wait_until(lambda: inv.client.get("/api/inventory/reservations/o-real").json()["status"]
               == st.COMMITTED, what="the confirmed order's reservation committed")
    sold = stock_of(inv, "HEADSET-BT")
    assert (sold["reserved"], sold["sold"]) == (0, 1)
    conserved(sold)


def test_no_oversell_with_two_replicas_under_concurrency(services: Services,
                                                         backend: Backend) -> None:
    # Two replicas starting at the same moment on an empty store seed the catalogue once.
    a = services.spawn("inventory-service", pg=backend)
    b = services.spawn("inventory-service", pg=backend)
    a.wait_ready()
    b.wait_ready()
    with store_of(services, backend) as es:
        seeded = Counter(e.stream_id for e in es.read_all(0, 10_000, types=[st.STOCK_SEEDED]))
    assert seeded == Counter({st.stock_stream(sku): 1 for sku in st.CATALOGUE})

    initial = st.CATALOGUE["LAPTOP-14"].initial
    bodies = [reserve_body(services, f"o-{n}", [{"sku": "LAPTOP-14", "quantity": 1 + n % 2},
                                                {"sku": "MOUSE-WL", "quantity": 1}], backend)
              for n in range(30)]
    calls = [
        (lambda svc=svc, n=n: post(svc, "/api/inventory/reservations", bodies[n]))
        for n in range(30) for svc in ([a] if n % 2 else [b])
    ]
    results = parallel(calls)
    assert {r.status_code for r in results} <= {201, 409}, [r.text for r in results]
    won = [r.json() for r in results if r.status_code == 201]
    taken = sum(ln["quantity"] for w in won for ln in w["lines"] if ln["sku"] == "LAPTOP-14")
    laptop = stock_of(a, "LAPTOP-14")
    assert taken <= initial and laptop["reserved"] == taken
    assert laptop["available"] == initial - taken and laptop["available"] <= 1
    assert stock_of(b, "LAPTOP-14") == laptop  # both replicas see the same stock
    assert stock_of(a, "MOUSE-WL")["reserved"] == len(won)  # all or nothing: one mouse per win
    conserved(laptop)


def test_holds_left_by_a_crash_are_given_back_at_start(services: Services) -> None:
    """inventory-service died after holding stock, and the saga then released the order: on
    start the service makes the holds agree with that decision."""
    inv = services.start("inventory-service")
    inv.stop()
    with store_of(services, None) as es:
        mouse = es.read_stream(st.stock_stream("MOUSE-WL"))
        stock = st.Stock("MOUSE-WL", available=100, version=len(mouse))
        es.append(st.stock_stream("MOUSE-WL"), [st.hold(stock, "o-crash", 5)], len(mouse))
        es.append(st.reservation_stream("o-crash"), [st.released(st.Reservation("o-crash"))],
                  "none")
    inv.restart()
    item = stock_of(inv, "MOUSE-WL")
    assert item["reserved"] == 0 and item["available"] == st.CATALOGUE["MOUSE-WL"].initial


# -- payment-service --------------------------------------------------------------------------


def open_accounts(payments: ServiceProc, balances: dict[str, int]) -> None:
    for account, balance in balances.items():
        r = fund(payments, account, balance)
        assert r.status_code == 201, r.text


def place_orders(services: Services, orders: dict[str, tuple[str, int]],
                 backend: Backend = None) -> None:
    """Place orders in the shared log as order-service does: {order id: (customer, total)}.
    payment-service charges an order only as placed (its customer, its total)."""
    with store_of(services, backend) as es:
        for oid, (user, amount) in orders.items():
            line = {"sku": "TEST-SKU", "quantity": 1, "price": amount}
            es.append(o.stream_id(oid), [o.place(o.Order(oid), user, [line])], "none")


def total(payments: ServiceProc) -> int:
    return payments.client.get("/api/payments/accounts").json()["total_balance"]


def test_charge_refund_and_conservation(services: Services) -> None:
    payments = services.start("payment-service")
    open_accounts(payments, {"alice": 10_000, "bob": 500})
    assert post(payments, "/api/payments/accounts", {"account_id": "alice"}).status_code == 200
    place_orders(services, {"o-1": ("alice", 2_999), "o-2": ("bob", 501), "o-3": ("nobody", 1)})

    charged = post(payments, "/api/payments", {"order_id": "o-1", "account_id": "alice",
                                               "amount": 2_999}, key="s-1:charge_payment")
    assert charged.status_code == 201
    assert charged.json()["status"] == "CHARGED" and charged.json()["balance"] == 7_001
    declined = post(payments, "/api/payments", {"order_id": "o-2", "account_id": "bob",
                                                "amount": 501})
    assert (declined.status_code, declined.json()["reason"]) == (409, "declined")
    unknown = post(payments, "/api/payments", {"order_id": "o-3", "account_id": "nobody",
                                               "amount": 1})
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "not_found")
    accounts = {a["account_id"]: a["balance"]
                for a in payments.client.get("/api/payments/accounts").json()["accounts"]}
    assert accounts == {"alice": 7_001, "bob": 500, pay.MERCHANT: 2_999}
    assert total(payments) == 10_500

    refund = post(payments, "/api/payments/o-1/refund", {}, key="s-1:refund_payment")
    assert refund.json() == {"order_id": "o-1", "status": "REFUNDED", "amount": 2_999,
                                  "account_id": "alice", "payment_id": charged.json()["payment_id"]}
    assert post(payments, "/api/payments/compensate", {"order_id": "o-1"}).status_code == 200
    assert payments.client.get("/api/payments/accounts/alice").json()["balance"] == 10_000
    assert total(payments) == 10_500
    # A refund that overtakes its slow charge voids the order: the charge cannot land later.
    assert post(payments, "/api/payments/o-late/refund").json()["amount"] == 0
    late = post(payments, "/api/payments", {"order_id": "o-late", "account_id": "alice",
                                            "amount": 100})
    assert late.status_code == 409 and late.json()["reason"] == "already_refunded"
    assert total(payments) == 10_500


def test_no_double_charge_under_concurrent_retries(services: Services, backend: Backend) -> None:
    a = services.start("payment-service", pg=backend)
    b = services.start("payment-service", pg=backend)
    open_accounts(a, {"alice": 100_000})
    place_orders(services, {"o-1": ("alice", 4_000),
                            **{f"c-{n}": ("carol", 3_000) for n in range(10)}}, backend)
    body = {"order_id": "o-1", "account_id": "alice", "amount": 4_000}
    same_key = [lambda svc=svc: post(svc, "/api/payments", body, key="s-1:charge_payment")
                for svc in [a, b] * 6]
    other_keys = [lambda svc=svc, n=n: post(svc, "/api/payments", body, key=f"retry-{n}")
                  for n, svc in enumerate([a, b] * 6)]
    results = parallel(same_key + other_keys)
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.json()["payment_id"] for r in results}) == 1
    assert a.client.get("/api/payments/accounts/alice").json()["balance"] == 96_000
    assert b.client.get("/api/payments/accounts/merchant").json()["balance"] == 4_000
    with store_of(services, backend) as es:
        kinds = Counter(e.type for e in es.read_all(0, 1000, stream_prefix="payment-"))
    assert kinds[pay.PAYMENT_CHARGED] == 1

    # Many different orders at once on one account: never overdrawn, money conserved.
    open_accounts(a, {"carol": 10_000})
    spend = [lambda svc=svc, n=n: post(svc, "/api/payments", {
        "order_id": f"c-{n}", "account_id": "carol", "amount": 3_000}) for n, svc in
        enumerate([a, b] * 5)]
    results = parallel(spend)
    assert sorted(r.status_code for r in results) == [201] * 3 + [409] * 7
    assert a.client.get("/api/payments/accounts/carol").json()["balance"] == 1_000
    assert total(a) == total(b) == 110_000


def test_injected_decline_and_the_first_answer_on_retry(services: Services) -> None:
    payments = services.start("payment-service")
    open_accounts(payments, {"alice": 10_000})
    faults = Faults(lambda name: payments.url, token=ADMIN_TOKEN)
    faults.inject("payment-service", "decline")
    place_orders(services, {"o-1": ("alice", 1_000)})
    body = {"order_id": "o-1", "account_id": "alice", "amount": 1_000}
    first = post(payments, "/api/payments", body, key="s-1:charge_payment")
    assert first.status_code == 409 and first.json()["reason"] == "declined"
    assert first.json()["cause"] == "injected_decline"
    # The fault is used up, but the same key still gets the first answer; a new key pays.
    assert post(payments, "/api/payments", body, key="s-1:charge_payment").json() == first.json()
    assert post(payments, "/api/payments", body, key="s-2:charge_payment").status_code == 201
    assert total(payments) == 10_000


# -- faults -----------------------------------------------------------------------------------


def test_error_and_delay_faults(services: Services) -> None:
    orders = services.start("order-service")
    faults = Faults(lambda name: orders.url, token=ADMIN_TOKEN)
    armed = faults.inject("order", "error", times=2)
    assert armed["mode"] == "error" and armed["times_left"] == 2
    assert [r["mode"] for r in faults.armed()] == ["error"] * 4  # one url for all four here
    for _ in range(2):
        r = orders.client.get("/api/orders")
        assert (r.status_code, r.json()["reason"]) == (503, "injected_fault")
    assert orders.client.get("/healthz").status_code == 200  # probes are never affected
    assert orders.client.get("/api/orders").status_code == 200

    faults.inject("order-service", "delay", seconds=0.6, path="/api/orders/")
    assert orders.client.get("/api/orders").status_code == 200  # path does not match ...
    assert {(f["mode"], f["fired"]) for f in faults.armed()} == {("delay", 0)}  # ... not fired
    started = time.monotonic()
    assert orders.client.get("/api/orders/x").status_code == 404
    # It fired on the matching path: used up, and the answer came no sooner than the delay
    # (a lower bound, which load can only make truer).
    assert faults.armed() == []
    assert time.monotonic() - started >= 0.6

    faults.inject("order", "error", times=5)
    assert faults.clear("order") == {"order-service": 1}
    assert orders.client.get("/api/orders").status_code == 200
    with pytest.raises(FaultError, match="payment-service"):
        faults.inject("order", "decline")
    with pytest.raises(FaultError, match="seconds"):
        faults.inject("order", "delay")
    refused = orders.client.post("/faults", json={"mode": "decline"}, headers=ADMIN)
    assert (refused.status_code, refused.json()["reason"]) == (422, "unsupported_mode")


def test_crash_fault_exits_and_the_state_survives_a_restart(services: Services) -> None:
    payments = services.start("payment-service")
    open_accounts(payments, {"alice": 10_000})
    place_orders(services, {"o-1": ("alice", 700)})
    charged = post(payments, "/api/payments", {"order_id": "o-1", "account_id": "alice",
                                               "amount": 700})
    assert charged.status_code == 201, charged.text
    Faults(lambda name: payments.url, token=ADMIN_TOKEN).inject("payment", "crash", path="/api/payments")
    with pytest.raises(httpx.HTTPError):
        payments.client.get("/api/payments/accounts")
    assert payments.wait_exit() == CRASH_EXIT_CODE
    payments.restart()
    assert payments.client.get("/api/payments/accounts/alice").json()["balance"] == 9_300
    assert payments.client.get("/faults", headers=ADMIN).json()["faults"] == []  # per process


def test_faults_are_off_unless_enabled(services: Services) -> None:
    inv = services.start("inventory-service", faults=False)
    assert inv.client.post("/faults", json={"mode": "error"}).status_code == 404
    with pytest.raises(FaultError, match="LABKIT_FAULTS=1"):
        Faults(lambda name: inv.url, token=ADMIN_TOKEN).inject("inventory", "error")


# -- user-service -----------------------------------------------------------------------------


def test_user_service_reads_the_log_and_forwards_creates(services: Services,
                                                         backend: Backend) -> None:
    commands = services.start("command-service", pg=backend)
    users = services.start("user-service", pg=backend,
                           env={"LABKIT_COMMAND_SERVICE_URL": commands.url})
    body = {"name": "Kim Minsu", "email": "minsu@example.com", "tier": "premium"}
    created = post(users, "/api/users", body, key="signup-1")
    assert created.status_code == 201, created.text
    user = created.json()
    assert (user["name"], user["status"], user["tier"]) == ("Kim Minsu", "active", "premium")
    again = post(users, "/api/users", body, key="signup-1")
    assert again.status_code == 201 and again.json()["id"] == user["id"]
    assert users.client.get(f"/api/users/{user['id']}").json()["email"] == "minsu@example.com"

    # A write through command-service directly is visible at once (consistent reads).
    direct = commands.client.post("/api/commands/deactivate-user", json={"user_id": user["id"]})
    assert direct.status_code == 202, direct.text
    assert users.client.get(f"/api/users/{user['id']}").json()["status"] == "inactive"
    listed = users.client.get("/api/users").json()
    assert listed["total"] == 1 and listed["users"][0]["id"] == user["id"]
    assert users.client.get("/api/users/nobody").status_code == 404
    invalid = post(users, "/api/users", {"name": "x", "email": "not-an-email"})
    assert invalid.status_code == 409 and invalid.json()["reason"] == "invalid_email"

    # The peer is gone: still ready (reads need only the event store, and the course deploys
    # user-service in 02-saga, before command-service in 03-cqrs); creates say so with a 503.
    commands.stop()
    assert users.client.get("/readyz").status_code == 200
    assert users.client.get(f"/api/users/{user['id']}").status_code == 200
    down = post(users, "/api/users", body)
    assert (down.status_code, down.json()["reason"]) == (503, "peer_unavailable")


def test_an_event_no_fold_can_read_stops_the_service_until_it_is_parked(
        services: Services, backend: Backend) -> None:
    """`labkit events append user-zz UserCreated '{"foo": 1}'` made every user read a 500 and
    user-service unable to start, parked or not. Now it starts, every answer (and /readyz)
    names the event and how to park it, and after parking both services go on without it."""
    from ecommerce.domain.events import NewEvent
    from ecommerce.projections.parking import park

    commands = services.start("command-service", pg=backend)
    users = services.start("user-service", pg=backend,
                           env={"LABKIT_COMMAND_SERVICE_URL": commands.url})
    kim = post(users, "/api/users", {"name": "Kim", "email": "kim@example.com"}).json()
    store = store_of(services, backend)
    bad = store.append("user-zz", [NewEvent("UserCreated", {"foo": 1})], "none").positions[0]

    def stopped(r: httpx.Response) -> str:
        assert (r.status_code, r.json()["reason"]) == (503, "unreadable_event"), r.text
        return r.json()["detail"]

    said = stopped(users.client.get(f"/api/users/{kim['id']}"))
    assert said.startswith(f"user-service cannot go on: event #{bad} (UserCreated in user-zz) "
                           "cannot be read (KeyError: 'name')"), said
    assert f"labkit events park {bad} --reason" in said
    ready = users.client.get("/readyz")
    assert ready.status_code == 503 and f"event #{bad}" in ready.json()["checks"]["events"]
    users.restart(ready_path="/healthz")  # it starts, to say why it cannot serve
    stopped(users.client.get("/api/users"))
    update = {"user_id": "zz", "name": "Z"}
    stopped(commands.client.post("/api/commands/update-user", json=update))

    park(store, bad, "a UserCreated without name or email", by="test")
    assert users.client.get(f"/api/users/{kim['id']}").json()["name"] == "Kim"
    assert users.client.get("/api/users/zz").status_code == 404  # its only event is skipped
    assert users.client.get("/readyz").status_code == 200
    refused = commands.client.post("/api/commands/update-user", json=update)
    assert (refused.status_code, refused.json()["reason"]) == (404, "not_found"), refused.text
    store.close()


def test_probes_and_openapi(services: Services) -> None:
    inv = services.start("inventory-service")
    ready = inv.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"] == {"event_store": "ok", "events": "ok",
                                                              "plugins": "ok"}
    paths = inv.client.get("/openapi.json").json()["paths"]
    assert "/api/inventory/reservations" in paths and "/faults" in paths
    lines = [ln for ln in inv.log_path.read_text().splitlines() if ln.startswith("{")]
    assert lines, "the service logs JSON lines"


# -- the shared participant machinery ---------------------------------------------------------


def test_participant_folds_every_event_exactly_once(tmp_path) -> None:
    """Own appends are folded at once, other writers' on the next catch-up, none twice, and
    other services' events never, however they interleave."""
    from ecommerce.domain.events import NewEvent
    from ecommerce.services.participant import Participant

    seen: list[str] = []
    es = SqliteEventStore(tmp_path / "events.db")
    p = Participant(es, lambda e: seen.append(e.id), stream_prefix="order-")
    mine = [NewEvent("OrderPlaced", {"n": n}) for n in range(3)]
    theirs = [NewEvent("OrderPlaced", {"n": n}) for n in range(3)]
    for n in range(3):
        es.append(f"saga-{n}", [NewEvent("SagaStarted", {})], "any")  # another service
        p.append(f"order-{n}", mine[n], "none")
        assert seen[-1] == mine[n].id  # folded without waiting for a catch-up
        es.append(f"order-x{n}", [theirs[n]], "none")  # another replica
    assert p.append("order-0", mine[0], "any").written is False  # a retry of the same event
    p.catch_up()
    p.catch_up()
    assert sorted(seen) == sorted(e.id for e in mine + theirs)
    assert len(seen) == 6


def test_a_catch_up_stopped_by_an_unreadable_event_folds_nothing_twice(tmp_path) -> None:
    """The events before the unreadable one in the same read are folded once (a catch-up that
    failed used to start its next try before them again: a balance counted twice), and after
    parking it the catch-up goes on past it."""
    from ecommerce.domain.events import NewEvent, UnreadableEventError
    from ecommerce.projections.parking import park
    from ecommerce.services.participant import Participant

    seen: list[int] = []

    def fold(e) -> None:
        seen.append(e.data["n"] + e.data["amount"])  # KeyError where "amount" is missing

    es = SqliteEventStore(tmp_path / "events.db")
    p = Participant(es, fold, stream_prefix="payment-")
    good, bad = {"n": 0, "amount": 1}, {"n": 1}
    positions = [es.append("payment-a", [NewEvent("Charged", d)], "any").positions[0]
                 for d in (good, bad, {"n": 2, "amount": 1})]
    for _ in range(2):
        with pytest.raises(UnreadableEventError, match=rf"event #{positions[1]} \(Charged"):
            p.catch_up()
    assert seen == [1]
    assert p.start() is False  # logged, not raised
    park(es, positions[1], "no amount", by="test")
    p.catch_up()
    p.ready()
    assert seen == [1, 3]
    es.close()
