"""Orders: stream `order-<id>`, PENDING -> CONFIRMED | CANCELLED.

Money is an integer number of cents everywhere (`price`, `total`): 1999 means 19.99. Integers
add exactly, serialise as JSON numbers, and never round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ecommerce.domain.events import NewEvent, RecordedEvent

# ORDER_CONFIRMED is an order event too: re-exported for `orders.ORDER_CONFIRMED`.
from ecommerce.domain.fate import ORDER_CONFIRMED as ORDER_CONFIRMED
from ecommerce.domain.fate import fate_id

ORDER_PLACED = "OrderPlaced"
ORDER_CANCELLED = "OrderCancelled"
ORDER_EVENTS = (ORDER_PLACED, ORDER_CONFIRMED, ORDER_CANCELLED)

PENDING, CONFIRMED, CANCELLED = "PENDING", "CONFIRMED", "CANCELLED"
STATUSES = (PENDING, CONFIRMED, CANCELLED)
STREAM_PREFIX = "order-"

#: What an order (or account, saga) id may be: what every service takes in a URL path.
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
MAX_LINES = 50
MAX_QUANTITY = 1_000_000
#: Largest price of one unit, in cents (a hundred million).
MAX_PRICE = 10_000_000_000


class OrderRuleError(ValueError):
    """A command breaks an order rule; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stream_id(order_id: str) -> str:
    return STREAM_PREFIX + order_id


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    #: Price of one unit in cents.
    price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.price

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "quantity": self.quantity, "price": self.price}


@dataclass(frozen=True)
class Order:
    id: str
    user_id: str = ""
    saga_id: str | None = None
    lines: tuple[Line, ...] = ()
    #: Sum of the lines' quantity * price, in cents.
    total: int = 0
    status: str = ""
    reason: str | None = None
    version: int = 0
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def quantities(self) -> dict[str, int]:
        """Units per SKU, in the order of its lines: what a reservation for it must hold."""
        return {ln.sku: ln.quantity for ln in self.lines}

    def as_dict(self) -> dict[str, Any]:
        return {"order_id": self.id, "status": self.status, "total": self.total,
                "lines": [ln.as_dict() for ln in self.lines], "user_id": self.user_id,
                "saga_id": self.saga_id, "reason": self.reason, "version": self.version,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OrderRuleError("invalid_lines", f"{what} must be an integer from {low} to {high}; "
                                              f"got {value!r}")
    return value


def make_lines(raw: Iterable[Mapping[str, Any] | Line]) -> tuple[Line, ...]:
    """Validated order lines: 1..MAX_LINES lines, distinct SKUs, integer quantity and cents."""
    lines: list[Line] = []
    for item in raw:
        if isinstance(item, Line):
            item = item.as_dict()
        sku = item.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise OrderRuleError("invalid_lines", f"every line needs a sku; got {sku!r}")
        lines.append(Line(sku, _int(item.get("quantity"), 1, MAX_QUANTITY, "quantity"),
                          _int(item.get("price"), 0, MAX_PRICE, "price (cents)")))
    if not 1 <= len(lines) <= MAX_LINES:
        raise OrderRuleError("invalid_lines", f"an order has 1 to {MAX_LINES} lines")
    skus = [ln.sku for ln in lines]
    if len(set(skus)) != len(skus):
        raise OrderRuleError("invalid_lines", "each sku may appear on one line only")
    return tuple(lines)


def total_of(lines: Iterable[Line]) -> int:
    return sum(ln.subtotal for ln in lines)


def apply(order: Order, event: RecordedEvent) -> Order:
    d, at = event.data, event.recorded_iso
    if event.type == ORDER_PLACED:
        lines = tuple(Line(ln["sku"], ln["quantity"], ln["price"]) for ln in d["lines"])
        return replace(order, user_id=d["user_id"], saga_id=d.get("saga_id"), lines=lines,
                       total=d["total"], status=PENDING, version=event.version,
                       created_at=at, updated_at=at)
    if event.type == ORDER_CONFIRMED:
        return replace(order, status=CONFIRMED, version=event.version, updated_at=at)
    if event.type == ORDER_CANCELLED:
        return replace(order, status=CANCELLED, reason=d.get("reason") or None,
                       version=event.version, updated_at=at)
    return replace(order, version=event.version)


class OrderBook:
    """Every order of the log, folded by `apply` from the order events (`ORDER_EVENTS`) of the
    `order-*` streams: what a participant checks a request against, whoever sends it
    (payment-service: an order's customer, total and status; inventory-service: its lines and
    status). Events of other types or streams are ignored, so any event may be given."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    def apply(self, event: RecordedEvent) -> None:
        if event.type not in ORDER_EVENTS or not event.stream_id.startswith(STREAM_PREFIX):
            return
        order_id = event.stream_id[len(STREAM_PREFIX):]
        self.orders[order_id] = apply(self.orders.get(order_id) or Order(order_id), event)

    def get(self, order_id: str) -> Order | None:
        """The order as placed and since changed; None if the log has no such order."""
        order = self.orders.get(order_id)
        return order if order is not None and order.exists else None

    def pending(self, order_id: str, what: str, *, withdrawn: bool = False) -> Order:
        """The order, if `what` ("a charge", "a reservation") may be made for it: it exists and
        is PENDING, not withdrawn by a compensation (`withdrawn`). Else `OrderRuleError`:
        `order_not_found`, `order_not_pending`."""
        order = self.get(order_id)
        if order is None:
            raise OrderRuleError("order_not_found",
                                 f"order {order_id} does not exist: {what} is for an order "
                                 "placed first (POST /api/orders, the saga's create_order step)")
        if order.status != PENDING or withdrawn:
            state = "withdrawn by a compensation" if order.status == PENDING else order.status
            raise OrderRuleError("order_not_pending",
                                 f"order {order_id} is {state}: {what} is made only for a "
                                 "PENDING order")
        return order


def fold(order_id: str, events: Iterable[RecordedEvent]) -> Order:
    order = Order(order_id)
    for e in events:
        order = apply(order, e)
    return order


def place(order: Order, user_id: str, lines: Iterable[Mapping[str, Any] | Line],
          saga_id: str | None = None) -> NewEvent:
    if order.exists:
        raise OrderRuleError("already_exists", f"order {order.id} already exists")
    if not isinstance(user_id, str) or not user_id:
        raise OrderRuleError("invalid_user", "an order needs a user_id")
    checked = make_lines(lines)
    return NewEvent(ORDER_PLACED, {
        "order_id": order.id, "user_id": user_id, "saga_id": saga_id,
        "lines": [ln.as_dict() for ln in checked], "total": total_of(checked),
    })


def _require(order: Order) -> None:
    if not order.exists:
        raise OrderRuleError("not_found", f"order {order.id} does not exist")


def confirm(order: Order) -> NewEvent | None:
    """Confirm a pending order. None: already confirmed (nothing to do)."""
    _require(order)
    if order.status == CONFIRMED:
        return None
    if order.status != PENDING:
        raise OrderRuleError("not_pending", f"order {order.id} is {order.status}, not PENDING")
    # The fate id: stored once, so a confirm and a refund/release can never both happen
    # (`ecommerce.domain.fate`).
    return NewEvent(ORDER_CONFIRMED, {"order_id": order.id, "total": order.total},
                    id=fate_id(order.id))


def cancel(order: Order, reason: str = "") -> NewEvent | None:
    """Cancel a pending order (the saga's compensation). None: already cancelled."""
    _require(order)
    if order.status == CANCELLED:
        return None
    if order.status != PENDING:
        raise OrderRuleError("already_confirmed",
                             f"order {order.id} is {order.status}; a confirmed order stays confirmed")
    return NewEvent(ORDER_CANCELLED, {"order_id": order.id, "reason": str(reason)[:500],
                                      "total": order.total})
