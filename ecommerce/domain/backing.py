"""What an order needs before it may be confirmed: its money charged and its stock reserved.

Confirming is the saga's pivot (`confirm_order`), the step after `reserve_stock` and
`charge_payment`. order-service confirms a PENDING order only when the log holds what those
steps record: a `PaymentCharged` of the order's total from its customer's account, and a
`ReservationMade` of exactly its lines. So no caller (the orchestrator, a student with curl, an
attacker through the gateway) can make a CONFIRMED order that nobody paid for or whose goods
are not held; the invariants (`labkit.ops.invariants`) promise that. What may happen after both
(a refund or a release slipping in) is the fate rule's business (`ecommerce.domain.fate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ecommerce.domain import orders as o
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.payments import PAYMENT_CHARGED
from ecommerce.domain.stock import RESERVATION_MADE

#: The events order-service folds to know what backs each order (any stream).
BACKING_EVENTS: Final = (PAYMENT_CHARGED, RESERVATION_MADE)


@dataclass
class Backing:
    """Per order: the charge recorded for it (account, amount) and the lines reserved for it."""

    charged: dict[str, tuple[str, int]] = field(default_factory=dict)
    reserved: dict[str, dict[str, int]] = field(default_factory=dict)

    def apply(self, event: RecordedEvent) -> None:
        d = event.data
        if event.type == PAYMENT_CHARGED:
            self.charged[d["order_id"]] = (d["account_id"], int(d["amount"]))
        elif event.type == RESERVATION_MADE:
            self.reserved[d["order_id"]] = {ln["sku"]: int(ln["quantity"]) for ln in d["lines"]}


def check_backed(order: o.Order, backing: Backing) -> None:
    """Raise `OrderRuleError` unless the PENDING `order` is paid (`not_paid`) and its stock
    reserved (`not_reserved`), as the saga's steps before the pivot leave it."""
    if backing.charged.get(order.id) != (order.user_id, order.total):
        raise o.OrderRuleError(
            "not_paid", f"order {order.id} cannot be confirmed: no charge of its total "
            f"({order.total} cents) from {order.user_id}'s account is recorded. The saga charges "
            "it first (charge_payment: POST /api/payments)")
    lines = order.quantities
    if backing.reserved.get(order.id) != lines:
        held = ", ".join(f"{sku} x{q}" for sku, q in sorted(lines.items()))
        raise o.OrderRuleError(
            "not_reserved", f"order {order.id} cannot be confirmed: its stock ({held}) is not "
            "reserved. The saga reserves it first (reserve_stock: POST /api/inventory/"
            "reservations)")
