"""The participants enforce their own rules whoever calls (issue 11): each test is a hole a
careless or hostile caller found on the old main, sent straight to the real processes.

One set of services shares one event store (as in the lab); every test uses its own ids.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecommerce.config import REPO_DIR
from ecommerce.domain import fate
from ecommerce.domain import stock as st
from ecommerce.store.sqlite_events import SqliteEventStore
from tests.integration.service_proc import ADMIN, ServiceProc, Services, fund, restock
from tests.waiting import wait_until

NAMES = ("order-service", "inventory-service", "payment-service", "command-service")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProc]]:
    lab = Services(tmp_path_factory.mktemp("rules"))
    try:
        yield {n: lab.start(n) for n in NAMES}
    finally:
        lab.close()


def post(s: ServiceProc, path: str, body: Any = None, key: str | None = None,
         **headers: str) -> httpx.Response:
    h = dict(headers)
    if key:
        h["Idempotency-Key"] = key
    return s.client.post(path, json=body, headers=h)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def confirmed_order(svc: dict[str, ServiceProc], user: str, sku: str = "MOUSE-WL") -> str:
    """What a completed saga leaves: an order CONFIRMED, its stock reserved, its money charged."""
    oid = new_id("o")
    assert fund(svc["payment-service"], user, 100_000).status_code == 201
    placed = post(svc["order-service"], "/api/orders",
                  {"order_id": oid, "user_id": user, "lines": [{"sku": sku, "quantity": 1}]})
    assert placed.status_code == 201, placed.text
    assert post(svc["inventory-service"], "/api/inventory/reservations",
                {"order_id": oid, "lines": [{"sku": sku, "quantity": 1}]}).status_code == 201
    charged = post(svc["payment-service"], "/api/payments",
                   {"order_id": oid, "account_id": user, "amount": placed.json()["total"]})
    assert charged.status_code == 201, charged.text
    assert post(svc["order-service"], f"/api/orders/{oid}/confirm").status_code == 200
    return oid


# -- money and stock cannot be taken ---------------------------------------------------------


def test_a_confirmed_order_cannot_be_refunded_or_released(svc: dict[str, ServiceProc]) -> None:
    user = new_id("u")
    oid = confirmed_order(svc, user)
    pay, inv = svc["payment-service"], svc["inventory-service"]
    balance = pay.client.get(f"/api/payments/accounts/{user}").json()["balance"]
    for path, body in ((f"/api/payments/{oid}/refund", {}),
                       ("/api/payments/compensate", {"order_id": oid})):
        r = post(pay, path, body, key=new_id("k"))
        assert (r.status_code, r.json()["reason"]) == (409, "order_confirmed"), r.text
        assert "CONFIRMED" in r.json()["detail"]
    r = post(inv, f"/api/inventory/reservations/{oid}/release", {})
    assert (r.status_code, r.json()["reason"]) in ((409, "order_confirmed"),
                                                   (409, "already_committed")), r.text
    assert pay.client.get(f"/api/payments/accounts/{user}").json()["balance"] == balance
    assert pay.client.get(f"/api/payments/{oid}").json()["status"] == "CHARGED"


def test_a_confirmed_order_turns_its_reservation_into_a_sale(svc: dict[str, ServiceProc]) -> None:
    inv = svc["inventory-service"]
    before = inv.client.get("/api/inventory/KEYBOARD-MX").json()
    oid = confirmed_order(svc, new_id("u"), "KEYBOARD-MX")
    wait_until(lambda: inv.client.get(f"/api/inventory/reservations/{oid}").json()["status"]
               == st.COMMITTED, what="the reservation committed")
    after = inv.client.get("/api/inventory/KEYBOARD-MX").json()
    assert after["sold"] == before["sold"] + 1 and after["reserved"] == before["reserved"]
    assert after["available"] + after["reserved"] + after["sold"] == after["initial"]


def test_an_order_is_confirmed_only_once_paid_and_reserved(svc: dict[str, ServiceProc]) -> None:
    """`curl -X POST .../api/orders/ID/confirm` confirmed an order nobody paid for and whose
    goods nobody held (the invariants' "CONFIRMED exactly when CHARGED and RESERVED")."""
    orders, pay, inv = svc["order-service"], svc["payment-service"], svc["inventory-service"]
    user, lines = new_id("u"), [{"sku": "MOUSE-WL", "quantity": 2}]
    fund(pay, user, 100_000)

    def place() -> tuple[str, int]:
        oid = new_id("o")
        placed = post(orders, "/api/orders", {"order_id": oid, "user_id": user, "lines": lines})
        assert placed.status_code == 201, placed.text
        return oid, placed.json()["total"]

    def confirm(oid: str) -> tuple[int, str]:
        r = post(orders, f"/api/orders/{oid}/confirm")
        return r.status_code, r.json().get("reason") or r.json()["status"]

    oid, total = place()
    assert confirm(oid) == (409, "not_paid")
    assert post(inv, "/api/inventory/reservations", {"order_id": oid, "lines": lines}
                ).status_code == 201
    assert confirm(oid) == (409, "not_paid")
    assert post(pay, "/api/payments", {"order_id": oid, "account_id": user, "amount": total}
                ).status_code == 201
    assert confirm(oid) == (200, "CONFIRMED")

    unreserved, total = place()
    assert post(pay, "/api/payments", {"order_id": unreserved, "account_id": user,
                                       "amount": total}).status_code == 201
    refused = post(orders, f"/api/orders/{unreserved}/confirm")
    assert (refused.status_code, refused.json()["reason"]) == (409, "not_reserved")
    assert "its stock (MOUSE-WL x2) is not reserved" in refused.json()["detail"]
    assert orders.client.get(f"/api/orders/{unreserved}").json()["status"] == "PENDING"


def test_a_refund_before_the_confirm_makes_the_confirm_refuse(
        svc: dict[str, ServiceProc]) -> None:
    """The race the fate id closes: a direct refund while the saga is about to confirm."""
    user, oid = new_id("u"), new_id("o")
    fund(svc["payment-service"], user, 10_000)
    placed = post(svc["order-service"], "/api/orders",
                  {"order_id": oid, "user_id": user, "lines": [{"sku": "MOUSE-WL", "quantity": 1}]})
    post(svc["payment-service"], "/api/payments",
         {"order_id": oid, "account_id": user, "amount": placed.json()["total"]})
    assert post(svc["payment-service"], f"/api/payments/{oid}/refund").status_code == 200
    confirm = post(svc["order-service"], f"/api/orders/{oid}/confirm")
    assert (confirm.status_code, confirm.json()["reason"]) == (409, "order_withdrawn")
    # Exactly one fate is stored, under the one id.
    with closing(SqliteEventStore(svc["order-service"].env["LABKIT_EVENTS_DB"])) as es:
        fates = [e for e in es.read_all(0, 100_000, types=list(fate.FATE_EVENTS))
                 if e.data["order_id"] == oid]
    assert [(e.type, e.id) for e in fates] == [(fate.ORDER_WITHDRAWN, fate.fate_id(oid))]


def test_a_charge_pays_for_an_order_as_placed_and_nothing_else(
        svc: dict[str, ServiceProc]) -> None:
    """The hole: `POST /api/payments` moved any amount from any account to the merchant for a
    made-up order id. Now only a PENDING order of the log is charged: its total, from its
    customer's account; anything else is refused with a reason and moves no money."""
    pay, orders = svc["payment-service"], svc["order-service"]
    user, victim = new_id("u"), new_id("u")
    fund(pay, user, 500_000)
    fund(pay, victim, 500_000)

    def place() -> dict[str, Any]:
        r = post(orders, "/api/orders", {"order_id": new_id("o"), "user_id": user,
                                         "lines": [{"sku": "MOUSE-WL", "quantity": 2}]})
        assert r.status_code == 201, r.text
        return r.json()

    def balances() -> dict[str, int]:
        return {a: pay.client.get(f"/api/payments/accounts/{a}").json()["balance"]
                for a in (user, victim, "merchant")}

    order, cancelled = place(), place()
    oid, total = order["order_id"], order["total"]
    assert post(orders, f"/api/orders/{cancelled['order_id']}/cancel",
                {"reason": "changed my mind"}).status_code == 200
    before = balances()
    for body, want in (
        ({"order_id": new_id("o"), "account_id": victim, "amount": 100_000},
         (404, "order_not_found")),
        ({"order_id": oid, "account_id": victim, "amount": total}, (409, "account_mismatch")),
        ({"order_id": oid, "account_id": user, "amount": total + 1}, (409, "amount_mismatch")),
        ({"order_id": oid, "account_id": user, "amount": 1}, (409, "amount_mismatch")),
        ({"order_id": cancelled["order_id"], "account_id": user, "amount": cancelled["total"]},
         (409, "order_not_pending")),
    ):
        key = new_id("k")
        r = post(pay, "/api/payments", body, key=key)
        assert (r.status_code, r.json()["reason"]) == want, r.text
        assert r.json()["detail"] and body["order_id"] in r.json()["detail"]
        assert post(pay, "/api/payments", body, key=key).json() == r.json()  # its first answer
    assert balances() == before
    assert pay.client.get(f"/api/payments/{oid}").status_code == 404  # nothing recorded

    charged = post(pay, "/api/payments", {"order_id": oid, "account_id": user, "amount": total})
    assert charged.status_code == 201, charged.text
    after = balances()
    assert after[user] == before[user] - total and after[victim] == before[victim]
    assert after["merchant"] == before["merchant"] + total


def test_prices_come_from_the_catalogue(svc: dict[str, ServiceProc]) -> None:
    tampered = {"user_id": "mallory", "lines": [{"sku": "LAPTOP-14", "quantity": 1, "price": 1}]}
    for name, path in (("order-service", "/api/orders"),
                       ("command-service", "/api/commands/place-order")):
        r = post(svc[name], path, tampered)
        assert r.status_code == 422, r.text
        assert any(e["field"] == "lines.0.price" and e["type"] == "extra_forbidden"
                   for e in r.json()["errors"])
    placed = post(svc["order-service"], "/api/orders",
                  {"user_id": "mallory", "lines": [{"sku": "LAPTOP-14", "quantity": 1}]})
    assert placed.json()["total"] == st.CATALOGUE["LAPTOP-14"].price


def test_an_unknown_sku_is_refused_naming_the_catalogue_never_asking_for_a_price(
        svc: dict[str, ServiceProc]) -> None:
    """order-service, command-service and `labkit saga place` say the same sentence (command-service
    and the CLI used to ask for a price, which command-service refuses as an unknown field)."""
    sentence = "sku 'NOPE' is not in the catalogue: choose one of " + ", ".join(sorted(st.CATALOGUE))
    order = {"user_id": "alice", "lines": [{"sku": "NOPE", "quantity": 1}]}
    for name, path, status in (("order-service", "/api/orders", 404),
                               ("command-service", "/api/commands/place-order", 422)):
        r = post(svc[name], path, order)
        assert (r.status_code, r.json()["reason"], r.json()["detail"]) == (
            status, "unknown_sku", sentence), r.text
    cmd = svc["command-service"]
    for line in ("NOPE:1", "NOPE:1:500"):  # the CLI takes a price, but not for an unknown SKU
        done = subprocess.run([sys.executable, "-m", "labkit.cli", "saga", "place", "--user",
                               "alice", "--line", line], env=cmd.env, cwd=REPO_DIR,
                              capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stderr.strip()) == (2, f"error: {sentence}"), done.stderr
    with closing(SqliteEventStore(cmd.env["LABKIT_EVENTS_DB"])) as es:
        started = es.read_all(0, 100_000, types=["SagaStarted"])
    assert not [e for e in started if "NOPE" in str(e.data["lines"])]  # no saga was started


def test_money_and_stock_come_in_only_through_admin_commands(
        svc: dict[str, ServiceProc]) -> None:
    pay, inv = svc["payment-service"], svc["inventory-service"]
    r = post(pay, "/api/payments/accounts", {"account_id": new_id("u"), "initial_balance": 10**9})
    assert (r.status_code, r.json()["reason"]) == (403, "admin_only")
    user = new_id("u")
    wrong = pay.client.post(f"/admin/payments/accounts/{user}/fund", json={"amount": 5},
                            headers={"X-Labkit-Admin-Token": "guess"})
    assert (wrong.status_code, wrong.json()["reason"]) == (403, "admin_token_invalid")
    assert pay.client.post(f"/admin/payments/accounts/{user}/fund",
                           json={"amount": 5}).status_code == 403
    funded = fund(pay, user, 700)
    assert funded.status_code == 201 and funded.json()["balance"] == 700
    accounts = pay.client.get("/api/payments/accounts").json()
    assert accounts["total_balance"] == sum(a["initial_balance"] + a["funded"]
                                            for a in accounts["accounts"])
    before = inv.client.get("/api/inventory/HEADSET-BT").json()
    assert restock(inv, "HEADSET-BT", 4).status_code == 201
    after = inv.client.get("/api/inventory/HEADSET-BT").json()
    assert (after["available"], after["initial"]) == (before["available"] + 4, before["initial"] + 4)
    assert restock(inv, "NOPE", 1).status_code == 404
    with closing(SqliteEventStore(inv.env["LABKIT_EVENTS_DB"])) as es:
        types = {e.type for e in es.read_all(0, 100_000)}
    assert {"AccountFunded", st.STOCK_RESTOCKED} <= types  # recorded as events


def test_admin_commands_do_not_exist_without_a_token(tmp_path: Path) -> None:
    lab = Services(tmp_path)
    try:
        pay = lab.start("payment-service", env={"LABKIT_ADMIN_TOKEN": ""})
        r = pay.client.post("/admin/payments/accounts/a/fund", json={"amount": 1}, headers=ADMIN)
        assert r.status_code == 404
        assert "/admin/payments/accounts/{account_id}/fund" not in pay.client.get(
            "/openapi.json").json()["paths"]
    finally:
        lab.close()


# -- idempotency is exact --------------------------------------------------------------------


def test_a_key_reused_for_another_request_is_refused_never_replayed(
        svc: dict[str, ServiceProc]) -> None:
    pay, orders = svc["payment-service"], svc["order-service"]
    user = new_id("u")
    fund(pay, user, 10_000)
    key = new_id("k")
    placed = post(orders, "/api/orders", {"order_id": new_id("o"), "user_id": user,
                                          "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}).json()
    oid, price = placed["order_id"], placed["total"]
    first = post(pay, "/api/payments", {"order_id": oid, "account_id": user, "amount": price},
                 key=key)
    assert first.status_code == 201, first.text
    same = post(pay, "/api/payments", {"order_id": oid, "account_id": user, "amount": price},
                key=key)
    assert (same.status_code, same.json()) == (201, first.json())
    other = post(pay, "/api/payments", {"order_id": oid, "account_id": user, "amount": 1}, key=key)
    assert (other.status_code, other.json()["reason"]) == (422, "idempotency_key_reused")

    body = {"user_id": user, "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}
    a = post(orders, "/api/orders", body, key=key)
    b = post(orders, "/api/orders", {**body, "lines": [{"sku": "MOUSE-WL", "quantity": 2}]},
             key=key)
    assert a.status_code == 201
    assert (b.status_code, b.json()["reason"]) == (422, "idempotency_key_reused")


def test_command_keys_are_scoped_and_exact(svc: dict[str, ServiceProc]) -> None:
    cmd = svc["command-service"]
    key = new_id("k")
    a, b = new_id("u"), new_id("u")
    created = post(cmd, "/api/commands/create-user",
                   {"user_id": a, "name": "A", "email": "a@example.com"}, key=key)
    assert created.status_code == 202
    # The same key for another user: another resource, another request (was a 500).
    other_user = post(cmd, "/api/commands/create-user",
                      {"user_id": b, "name": "B", "email": "b@example.com"}, key=key)
    assert other_user.status_code == 202, other_user.text
    # The same key at another endpoint: it does what it says (was 202 and nothing changed).
    updated = post(cmd, "/api/commands/update-user", {"user_id": a, "name": "A2"}, key=key)
    assert updated.status_code == 202 and updated.json()["event_type"] == "UserUpdated"
    again = post(cmd, "/api/commands/create-user",
                 {"user_id": a, "name": "A", "email": "a@example.com"}, key=key)
    assert (again.status_code, again.json()["event_id"]) == (202, created.json()["event_id"])
    changed = post(cmd, "/api/commands/create-user",
                   {"user_id": a, "name": "Other", "email": "a@example.com"}, key=key)
    assert (changed.status_code, changed.json()["reason"]) == (422, "idempotency_key_reused")

    order = {"user_id": a, "lines": [{"sku": "MOUSE-WL", "quantity": 1}]}
    placed = post(cmd, "/api/commands/place-order", order, key=key)
    assert post(cmd, "/api/commands/place-order", order, key=key).json()["saga_id"] == \
        placed.json()["saga_id"]
    b_order = post(cmd, "/api/commands/place-order",
                   {**order, "lines": [{"sku": "KEYBOARD-MX", "quantity": 1}]}, key=key)
    assert (b_order.status_code, b_order.json()["reason"]) == (422, "idempotency_key_reused")


# -- limits and contracts ------------------------------------------------------------------


def test_bodies_over_one_mib_get_413(svc: dict[str, ServiceProc]) -> None:
    big = b'{"order_id": "' + b"x" * (1024 * 1024) + b'"}'
    for s in svc.values():
        r = s.client.post("/api/orders" if s.name == "order-service" else "/faults", content=big,
                          headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["reason"]) == (413, "body_too_large"), s.name

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"order_id": "'
        for _ in range(20):
            yield b"x" * 65536
    r = svc["payment-service"].client.post("/api/payments", content=chunks(),
                                           headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_openapi_documents_the_errors_and_refuses_unknown_fields(
        svc: dict[str, ServiceProc]) -> None:
    for s in svc.values():
        doc = s.client.get("/openapi.json").json()
        schemas = doc["components"]["schemas"]
        assert "HTTPValidationError" not in schemas and "ErrorBody" in schemas
        for path, ops in doc["paths"].items():
            if path in ("/healthz", "/readyz"):
                continue
            for method, op in ops.items():
                for code in ("404", "409", "413", "422", "503"):
                    ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (s.name, method, path, code)
        for name, schema in schemas.items():
            if schema.get("type") == "object" and name not in ("ErrorBody", "FieldError"):
                assert schema.get("additionalProperties") is False, (s.name, name)
