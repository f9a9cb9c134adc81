"""Orders: exact totals in cents, the PENDING -> CONFIRMED | CANCELLED rules, the orders view."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecommerce.domain import orders as o
from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.domain.readmodel import apply_to_dict
from ecommerce.projections.orders import ORDER_STATS, ORDERS, ORDERS_VIEW, STATS_KEY

AT = "2026-01-05T10:00:00+00:00"


class Log:
    """Just enough of an event store: streams with versions and global positions."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def append(self, stream: str, ev: NewEvent) -> RecordedEvent:
        version = sum(1 for e in self.events if e.stream_id == stream) + 1
        rec = RecordedEvent(ev.id, stream, version, len(self.events) + 1, ev.type,
                            ev.schema_version, dict(ev.data), dict(ev.metadata), AT)
        self.events.append(rec)
        return rec

    def order(self, oid: str) -> o.Order:
        return o.fold(oid, [e for e in self.events if e.stream_id == o.stream_id(oid)])


LINES = [{"sku": "MOUSE-WL", "quantity": 3, "price": 1999},
         {"sku": "LAPTOP-14", "quantity": 1, "price": 129_900}]


def placed(log: Log, oid: str = "o1", lines: list[dict[str, Any]] = LINES) -> o.Order:
    log.append(o.stream_id(oid), o.place(o.Order(oid), "alice", lines, saga_id="s1"))
    return log.order(oid)


def test_total_is_exact_integer_cents() -> None:
    order = placed(Log())
    assert order.total == 3 * 1999 + 129_900 == 135_897
    assert isinstance(order.total, int)
    assert order.status == o.PENDING and order.saga_id == "s1" and order.version == 1
    assert order.as_dict()["lines"] == LINES


@pytest.mark.parametrize("lines", [
    [],
    [{"sku": "A", "quantity": 0, "price": 1}],
    [{"sku": "A", "quantity": 1, "price": 19.99}],          # money must be integer cents
    [{"sku": "A", "quantity": True, "price": 1}],
    [{"sku": "A", "quantity": 1, "price": -1}],
    [{"sku": "", "quantity": 1, "price": 1}],
    [{"sku": "A", "quantity": 1, "price": 1}, {"sku": "A", "quantity": 2, "price": 1}],
])
def test_bad_lines_are_refused(lines: list[dict[str, Any]]) -> None:
    with pytest.raises(o.OrderRuleError) as err:
        o.place(o.Order("o1"), "alice", lines)
    assert err.value.reason == "invalid_lines"


def test_an_order_is_placed_once() -> None:
    log = Log()
    order = placed(log)
    with pytest.raises(o.OrderRuleError) as err:
        o.place(order, "bob", LINES)
    assert err.value.reason == "already_exists"


def test_confirm_then_cancel_is_refused() -> None:
    log = Log()
    order = placed(log)
    log.append(o.stream_id("o1"), o.confirm(order))
    order = log.order("o1")
    assert order.status == o.CONFIRMED
    assert o.confirm(order) is None  # confirming twice changes nothing
    with pytest.raises(o.OrderRuleError) as err:
        o.cancel(order, "too late")
    assert err.value.reason == "already_confirmed"


def test_cancel_is_the_compensation_and_is_idempotent() -> None:
    log = Log()
    order = placed(log)
    log.append(o.stream_id("o1"), o.cancel(order, "payment declined"))
    order = log.order("o1")
    assert (order.status, order.reason, order.version) == (o.CANCELLED, "payment declined", 2)
    assert o.cancel(order) is None
    with pytest.raises(o.OrderRuleError) as err:
        o.confirm(order)
    assert err.value.reason == "not_pending"


def test_unknown_orders_are_not_found() -> None:
    for command in (o.confirm, o.cancel):
        with pytest.raises(o.OrderRuleError) as err:
            command(o.Order("nope"))
        assert err.value.reason == "not_found"


line = st.fixed_dictionaries({"sku": st.text("ABCDEFGH", min_size=1, max_size=3),
                              "quantity": st.integers(1, o.MAX_QUANTITY),
                              "price": st.integers(0, o.MAX_PRICE)})


@given(st.lists(line, min_size=1, max_size=8, unique_by=lambda ln: ln["sku"]))
def test_total_is_the_exact_sum_of_the_lines(lines: list[dict[str, int]]) -> None:
    ev = o.place(o.Order("o"), "u", lines)
    assert ev.data["total"] == sum(ln["quantity"] * ln["price"] for ln in lines)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["place", "confirm", "cancel"])),
                max_size=40))
def test_orders_view_agrees_with_the_folded_orders(commands: list[tuple[int, str]]) -> None:
    """Whatever the commands, the projection's documents and counts equal the event-sourced
    state: one doc per order with its status, and counts per status that add up."""
    log = Log()
    for n, command in commands:
        oid = f"o{n}"
        order = log.order(oid)
        try:
            if command == "place":
                ev: NewEvent | None = o.place(order, "alice", [{"sku": "A", "quantity": 1,
                                                                "price": 100 + n}])
            elif command == "confirm":
                ev = o.confirm(order)
            else:
                ev = o.cancel(order, "because")
        except o.OrderRuleError:
            continue
        if ev is not None:
            log.append(o.stream_id(oid), ev)
    view: dict[tuple[str, str], dict[str, Any]] = {}
    for e in log.events:
        for w in ORDERS_VIEW.project(e):
            apply_to_dict(view, w)
    orders = {key: doc for (coll, key), doc in view.items() if coll == ORDERS}
    folded = {f"o{n}": log.order(f"o{n}") for n in range(6)}
    folded = {oid: x for oid, x in folded.items() if x.exists}
    assert {k: (d["status"], d["total"]) for k, d in orders.items()} == {
        k: (x.status, x.total) for k, x in folded.items()}
    stats = view.get((ORDER_STATS, STATS_KEY), {})
    by_status = {s: sum(1 for x in folded.values() if x.status == s) for s in o.STATUSES}
    assert stats.get("total_orders", 0) == len(folded)
    assert stats.get("pending", 0) == by_status[o.PENDING]
    assert stats.get("confirmed", 0) == by_status[o.CONFIRMED]
    assert stats.get("cancelled", 0) == by_status[o.CANCELLED]
    assert stats.get("confirmed_revenue", 0) == sum(
        x.total for x in folded.values() if x.status == o.CONFIRMED)
