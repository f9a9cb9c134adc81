"""Stock: one stream per SKU (`stock-<sku>`) and one per order's reservation (`reservation-<id>`).

A SKU's stream holds its seeding and every hold, release and shipment, each naming its order;
its expected version guards it, so two reservations can never both take the last unit. An
order's reservation stream records the *decision* (RESERVED, REJECTED, RELEASED, COMMITTED):
the first decision appended wins, and the holds in the SKU streams are then made to agree with
it. Holds, releases and shipments have deterministic ids (per SKU and order), so an order holds
a SKU at most once, however often a request is retried.

A reservation is for an order of the shared log, as it was placed, and a sale for a confirmed
one, whoever calls: inventory-service folds the orders (`orders.OrderBook`) and refuses a new
reservation unless the order exists, is PENDING and not withdrawn by a compensation, and the
lines are exactly the order's (`check_reservable`), and a commit unless the order is CONFIRMED
(`check_committable`).

Conservation: for every SKU, `available + reserved + sold == initial` at every version
(`initial` counts the seeding and every restock, the admin command).
Prices are integer cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecommerce.domain import orders as o
from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.domain.idempotency import event_id


@dataclass(frozen=True)
class CatalogueItem:
    sku: str
    name: str
    #: Unit price in cents.
    price: int
    #: Units in stock when the lab starts.
    initial: int


#: What the warehouse holds when the lab starts (seeded idempotently by inventory-service).
CATALOGUE: dict[str, CatalogueItem] = {
    item.sku: item
    for item in (
        CatalogueItem("LAPTOP-14", "Laptop 14-inch", 129_900, 10),
        CatalogueItem("MONITOR-27", "Monitor 27-inch", 32_900, 20),
        CatalogueItem("KEYBOARD-MX", "Mechanical keyboard", 8_900, 50),
        CatalogueItem("MOUSE-WL", "Wireless mouse", 2_500, 10_000),  # plenty: load tests
        CatalogueItem("HEADSET-BT", "Bluetooth headset", 5_900, 3),
    )
}



def not_in_catalogue(sku: str, skus: Iterable[str]) -> str:
    """The sentence for an order line naming an unknown SKU: the SKUs one can order, sorted (the
    same from every caller, whether its catalogue came from inventory-service or the code)."""
    known = ", ".join(sorted(skus))
    if not known:
        return f"sku {sku!r} is not in the catalogue, which is empty"
    return f"sku {sku!r} is not in the catalogue: choose one of {known}"


STOCK_SEEDED = "StockSeeded"
STOCK_RESERVED = "StockReserved"
STOCK_RELEASED = "StockReleased"
STOCK_COMMITTED = "StockCommitted"
#: The admin command that brings more units into the warehouse.
STOCK_RESTOCKED = "StockRestocked"
STOCK_EVENTS = (STOCK_SEEDED, STOCK_RESERVED, STOCK_RELEASED, STOCK_COMMITTED, STOCK_RESTOCKED)

RESERVATION_MADE = "ReservationMade"
RESERVATION_REJECTED = "ReservationRejected"
RESERVATION_RELEASED = "ReservationReleased"
RESERVATION_COMMITTED = "ReservationCommitted"
RESERVATION_EVENTS = (RESERVATION_MADE, RESERVATION_REJECTED, RESERVATION_RELEASED,
                      RESERVATION_COMMITTED)
INVENTORY_EVENTS = STOCK_EVENTS + RESERVATION_EVENTS

RESERVED, REJECTED, RELEASED, COMMITTED = "RESERVED", "REJECTED", "RELEASED", "COMMITTED"
_STATUS = {RESERVATION_MADE: RESERVED, RESERVATION_REJECTED: REJECTED,
           RESERVATION_RELEASED: RELEASED, RESERVATION_COMMITTED: COMMITTED}

STOCK_PREFIX = "stock-"
RESERVATION_PREFIX = "reservation-"
MAX_LINES = 50
MAX_QUANTITY = 1_000_000

#: (sku, quantity) pairs, in the order given.
Lines = tuple[tuple[str, int], ...]


class StockRuleError(ValueError):
    """A stock rule refused the command; `reason` is machine-readable, `details` say more."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason, self.details = reason, details


def stock_stream(sku: str) -> str:
    return STOCK_PREFIX + sku


def reservation_stream(order_id: str) -> str:
    return RESERVATION_PREFIX + order_id


@dataclass
class Stock:
    """One SKU, folded from `stock-<sku>`. Mutable: the service keeps it current in memory."""

    sku: str
    name: str = ""
    price: int = 0
    initial: int = 0
    available: int = 0
    reserved: int = 0
    sold: int = 0
    version: int = 0
    #: Units held per order (reserved and not yet released or shipped).
    holds: dict[str, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "name": self.name, "available": self.available,
                "reserved": self.reserved, "sold": self.sold, "initial": self.initial,
                "price": self.price, "version": self.version}


@dataclass
class Reservation:
    """An order's reservation decision, folded from `reservation-<order_id>`."""

    order_id: str
    status: str = ""
    lines: Lines = ()
    version: int = 0
    #: For a rejection: which sku was short, how many were asked for and available.
    shortage: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"order_id": self.order_id, "status": self.status,
                               "lines": lines_as_dicts(self.lines), "version": self.version}
        if self.shortage:
            out["shortage"] = dict(self.shortage)
        return out


class Inventory:
    """Every SKU and reservation, folded from the inventory events of the log."""

    def __init__(self) -> None:
        self.stocks: dict[str, Stock] = {}
        self.reservations: dict[str, Reservation] = {}

    def stock(self, sku: str) -> Stock:
        return self.stocks.get(sku) or Stock(sku)

    def reservation(self, order_id: str) -> Reservation:
        return self.reservations.get(order_id) or Reservation(order_id)

    def apply(self, event: RecordedEvent) -> None:
        t, d = event.type, event.data
        if t in _STATUS:
            r = self.reservations.get(d["order_id"])
            if r is None:
                r = self.reservations[d["order_id"]] = Reservation(d["order_id"])
            r.status, r.version = _STATUS[t], event.version
            if d.get("lines"):
                r.lines = tuple((ln["sku"], ln["quantity"]) for ln in d["lines"])
            if t == RESERVATION_REJECTED:
                r.shortage = d.get("shortage")
            return
        s = self.stocks.get(d["sku"])
        if s is None:
            s = self.stocks[d["sku"]] = Stock(d["sku"])
        s.version = event.version
        if t == STOCK_SEEDED:
            s.name, s.price, s.initial = d["name"], d["price"], d["quantity"]
            s.available = d["quantity"]
        elif t == STOCK_RESTOCKED:  # more units in the warehouse: `initial` counts them too
            s.initial += d["quantity"]
            s.available += d["quantity"]
        elif t == STOCK_RESERVED:
            q = d["quantity"]
            s.available -= q
            s.reserved += q
            s.holds[d["order_id"]] = s.holds.get(d["order_id"], 0) + q
        elif t == STOCK_RELEASED:
            q = d["quantity"]
            s.available += q
            s.reserved -= q
            s.holds.pop(d["order_id"], None)
        elif t == STOCK_COMMITTED:
            q = d["quantity"]
            s.reserved -= q
            s.sold += q
            s.holds.pop(d["order_id"], None)


def lines_as_dicts(lines: Lines) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": q} for sku, q in lines]


def make_lines(raw: Iterable[Mapping[str, Any]]) -> Lines:
    """Validated reservation lines: 1..MAX_LINES, distinct SKUs, integer quantities >= 1."""
    out: list[tuple[str, int]] = []
    for item in raw:
        sku, q = item.get("sku"), item.get("quantity")
        if not isinstance(sku, str) or not sku:
            raise StockRuleError("invalid_lines", f"every line needs a sku; got {sku!r}")
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= MAX_QUANTITY:
            raise StockRuleError("invalid_lines",
                                 f"quantity must be an integer from 1 to {MAX_QUANTITY}; got {q!r}")
        out.append((sku, q))
    if not 1 <= len(out) <= MAX_LINES:
        raise StockRuleError("invalid_lines", f"a reservation has 1 to {MAX_LINES} lines")
    if len({sku for sku, _ in out}) != len(out):
        raise StockRuleError("invalid_lines", "each sku may appear on one line only")
    return tuple(out)


def check_known(inv: Inventory, lines: Lines) -> None:
    for sku, _ in lines:
        if not inv.stock(sku).exists:
            raise StockRuleError("unknown_sku", f"sku {sku!r} is not in the catalogue", sku=sku)


def _described(lines: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{q} x {sku}" for sku, q in sorted(lines))


def check_reservable(book: o.OrderBook, order_id: str, lines: Lines, *,
                     withdrawn: bool = False) -> None:
    """Raise `StockRuleError` unless a new reservation of `lines` may hold stock for the order:
    it exists in the log, is PENDING and not withdrawn by a compensation (`withdrawn`), and
    `lines` are exactly its lines (the same SKUs and quantities, in any order).

    Reasons: `order_not_found`, `order_not_pending`, `lines_mismatch` (details: `order_lines`).
    """
    try:
        order = book.pending(order_id, "a reservation", withdrawn=withdrawn)
    except o.OrderRuleError as exc:
        raise StockRuleError(exc.reason, str(exc)) from None
    held = tuple(order.quantities.items())
    if dict(lines) != dict(held):
        raise StockRuleError("lines_mismatch",
                             f"order {order_id} holds {_described(held)}: a reservation is for "
                             f"exactly the order's lines (the same SKUs and quantities), not "
                             f"{_described(lines)}", order_lines=lines_as_dicts(held))


def check_committable(book: o.OrderBook, order_id: str) -> None:
    """Raise `StockRuleError("order_not_confirmed")` unless the order is CONFIRMED in the log:
    only then may its held units be sold."""
    order = book.get(order_id)
    if order is None or order.status != o.CONFIRMED:
        state = "does not exist" if order is None else f"is {order.status}"
        raise StockRuleError("order_not_confirmed",
                             f"order {order_id} {state}: stock leaves the warehouse only for a "
                             "CONFIRMED order (inventory-service commits a confirmed order's "
                             "reservation by itself when it sees OrderConfirmed)")


def shortage(inv: Inventory, order_id: str, lines: Lines) -> dict[str, Any] | None:
    """The first line the warehouse cannot cover (holds this order already has count)."""
    for sku, q in lines:
        s = inv.stock(sku)
        if order_id in s.holds:
            continue
        if s.available < q:
            return {"sku": sku, "requested": q, "available": s.available}
    return None


# -- events ------------------------------------------------------------------------------------


def seed(item: CatalogueItem) -> NewEvent:
    """The SKU's first event. Its fixed id makes seeding idempotent across restarts/replicas."""
    return NewEvent(STOCK_SEEDED, {"sku": item.sku, "name": item.name, "price": item.price,
                                   "quantity": item.initial},
                    id=event_id("stock", item.sku, "seeded"))


def restock(stock: Stock, quantity: int, *, ident: str) -> NewEvent:
    """More units of a SKU (the admin command). `ident` (the request's key) makes the id: a
    retried request restocks once."""
    if not stock.exists:
        raise StockRuleError("unknown_sku", f"sku {stock.sku!r} is not in the catalogue",
                             sku=stock.sku)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise StockRuleError("invalid_quantity",
                             f"quantity must be an integer from 1 to {MAX_QUANTITY}; got {quantity!r}")
    return NewEvent(STOCK_RESTOCKED, {"sku": stock.sku, "quantity": quantity},
                    id=event_id("stock", stock.sku, "restock", ident))


def hold(stock: Stock, order_id: str, quantity: int) -> NewEvent | None:
    """Reserve units of one SKU for an order. None: this order holds it already."""
    if order_id in stock.holds:
        return None
    if stock.available < quantity:
        raise StockRuleError("insufficient_stock",
                             f"{stock.sku}: {quantity} requested, {stock.available} available",
                             sku=stock.sku, requested=quantity, available=stock.available)
    return NewEvent(STOCK_RESERVED, {"sku": stock.sku, "order_id": order_id, "quantity": quantity},
                    id=event_id("stock", stock.sku, order_id, "hold"))


def unhold(stock: Stock, order_id: str) -> NewEvent | None:
    """Give an order's held units back. None: it holds nothing here."""
    q = stock.holds.get(order_id)
    if not q:
        return None
    return NewEvent(STOCK_RELEASED, {"sku": stock.sku, "order_id": order_id, "quantity": q},
                    id=event_id("stock", stock.sku, order_id, "release"))


def ship(stock: Stock, order_id: str) -> NewEvent | None:
    """The held units leave the warehouse (the order is confirmed). None: nothing held."""
    q = stock.holds.get(order_id)
    if not q:
        return None
    return NewEvent(STOCK_COMMITTED, {"sku": stock.sku, "order_id": order_id, "quantity": q},
                    id=event_id("stock", stock.sku, order_id, "commit"))


def _decision(etype: str, order_id: str, lines: Lines, **extra: Any) -> NewEvent:
    return NewEvent(etype, {"order_id": order_id, "lines": lines_as_dicts(lines), **extra},
                    id=event_id("reservation", order_id, _STATUS[etype]))


def made(order_id: str, lines: Lines) -> NewEvent:
    return _decision(RESERVATION_MADE, order_id, lines)


def rejected(order_id: str, lines: Lines, short: Mapping[str, Any]) -> NewEvent:
    return _decision(RESERVATION_REJECTED, order_id, lines, shortage=dict(short))


def released(r: Reservation) -> NewEvent:
    """Close a reservation: its holds go back (a tombstone if it never existed).

    A release that arrives before its reservation (the reserve request was slow) is recorded
    too, so the late reservation finds the order closed instead of taking stock forever.
    """
    if r.status == COMMITTED:
        raise StockRuleError("already_committed",
                             f"the reservation of order {r.order_id} was committed (shipped)")
    return _decision(RESERVATION_RELEASED, r.order_id, r.lines)


def committed(r: Reservation) -> NewEvent:
    if r.status != RESERVED:
        raise StockRuleError("not_reserved",
                             f"order {r.order_id} has no active reservation ({r.status or 'none'})")
    return _decision(RESERVATION_COMMITTED, r.order_id, r.lines)


def settle(inv: Inventory, order_id: str) -> list[tuple[Stock, NewEvent]]:
    """Stock events that make the SKU holds agree with the order's decision.

    RELEASED / REJECTED: every hold goes back; COMMITTED: every hold ships; RESERVED or no
    decision: nothing (a reservation may be in progress).
    """
    r = inv.reservations.get(order_id)
    if r is None or r.status == RESERVED:
        return []
    make = ship if r.status == COMMITTED else unhold
    out = []
    for s in inv.stocks.values():
        ev = make(s, order_id)
        if ev is not None:
            out.append((s, ev))
    return out
