"""The orders view (`/api/queries/orders`) and order counts by status.

One document per order, keyed by order id; `order_stats/summary` counts orders per status and
sums the confirmed revenue (integer cents). Orders only ever leave PENDING (confirm or cancel
from any other status writes no event), so each event's effect on the counts is fixed.
"""

from __future__ import annotations

from ecommerce.domain import orders as o
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Incr, Merge, Put, Write
from ecommerce.projections.base import Projection

ORDERS = "orders"
ORDER_STATS = "order_stats"
STATS_KEY = "summary"


def _oid(e: RecordedEvent) -> str:
    return e.stream_id[len(o.STREAM_PREFIX):]


def _placed(e: RecordedEvent) -> list[Write]:
    d, oid, at = e.data, _oid(e), e.recorded_iso
    return [
        Put(ORDERS, oid, {"order_id": oid, "status": o.PENDING, "total": d["total"],
                          "lines": d["lines"], "user_id": d["user_id"],
                          "saga_id": d.get("saga_id"), "reason": None, "created_at": at,
                          "updated_at": at, "version": e.version}, e.position),
        Incr(ORDER_STATS, STATS_KEY, {"total_orders": 1, "pending": 1}),
    ]


def _confirmed(e: RecordedEvent) -> list[Write]:
    return [
        Merge(ORDERS, _oid(e), {"status": o.CONFIRMED, "updated_at": e.recorded_iso,
                                "version": e.version}, e.position),
        Incr(ORDER_STATS, STATS_KEY, {"pending": -1, "confirmed": 1,
                                      "confirmed_revenue": int(e.data.get("total", 0))}),
    ]


def _cancelled(e: RecordedEvent) -> list[Write]:
    return [
        Merge(ORDERS, _oid(e), {"status": o.CANCELLED, "reason": e.data.get("reason") or None,
                                "updated_at": e.recorded_iso, "version": e.version}, e.position),
        Incr(ORDER_STATS, STATS_KEY, {"pending": -1, "cancelled": 1}),
    ]


ORDERS_VIEW = Projection(
    "orders", (ORDERS, ORDER_STATS),
    {o.ORDER_PLACED: _placed, o.ORDER_CONFIRMED: _confirmed, o.ORDER_CANCELLED: _cancelled},
    "one document per order (status, total in cents, user, saga) and counts by status",
)
project_orders = ORDERS_VIEW.project
