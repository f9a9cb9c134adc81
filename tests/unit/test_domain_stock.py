"""Stock: the catalogue, all-or-nothing holds, no oversell, and units conserved per SKU."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecommerce.domain import orders as o
from ecommerce.domain import stock as s
from ecommerce.domain.events import NewEvent, RecordedEvent

AT = "2026-01-05T10:00:00+00:00"


class Log:
    """An in-memory log with the event store's two guarantees: an id is stored once, and an
    append at a stale expected version is refused."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.inv = s.Inventory()

    def version(self, stream: str) -> int:
        return sum(1 for e in self.events if e.stream_id == stream)

    def append(self, stream: str, ev: NewEvent, expected: int | None = None) -> bool:
        if any(e.id == ev.id for e in self.events):
            return False
        if expected is not None and expected != self.version(stream):
            raise AssertionError("stale expected version")
        rec = RecordedEvent(ev.id, stream, self.version(stream) + 1, len(self.events) + 1,
                            ev.type, 1, dict(ev.data), {}, AT)
        self.events.append(rec)
        self.inv.apply(rec)
        return True


def seeded() -> Log:
    log = Log()
    for item in s.CATALOGUE.values():
        log.append(s.stock_stream(item.sku), s.seed(item))
    return log


def reserve(log: Log, oid: str, lines: s.Lines) -> str:
    """What inventory-service does: hold every line or decide REJECTED and give holds back."""
    if oid in log.inv.reservations:
        return log.inv.reservations[oid].status
    short = s.shortage(log.inv, oid, lines)
    if short is None:
        for sku, q in sorted(lines):
            stock = log.inv.stock(sku)
            if (ev := s.hold(stock, oid, q)) is not None:
                log.append(s.stock_stream(sku), ev, stock.version)
        log.append(s.reservation_stream(oid), s.made(oid, lines))
    else:
        log.append(s.reservation_stream(oid), s.rejected(oid, lines, short))
    settle(log, oid)
    return log.inv.reservations[oid].status


def settle(log: Log, oid: str) -> None:
    for stock, ev in s.settle(log.inv, oid):
        log.append(s.stock_stream(stock.sku), ev, stock.version)


def conserved(log: Log) -> None:
    for stock in log.inv.stocks.values():
        assert stock.available >= 0 and stock.reserved >= 0
        assert stock.available + stock.reserved + stock.sold == stock.initial
        assert stock.reserved == sum(stock.holds.values())


def test_catalogue_has_a_few_priced_skus() -> None:
    assert 4 <= len(s.CATALOGUE) <= 8
    for sku, item in s.CATALOGUE.items():
        assert sku == item.sku and item.name
        assert isinstance(item.price, int) and item.price > 0  # integer cents
        assert isinstance(item.initial, int) and item.initial > 0


def test_seeding_has_fixed_ids_so_it_happens_once() -> None:
    log = seeded()
    item = next(iter(s.CATALOGUE.values()))
    assert s.seed(item).id == s.seed(item).id
    assert log.append(s.stock_stream(item.sku), s.seed(item)) is False
    assert log.inv.stock(item.sku).available == item.initial


def test_reserve_all_or_nothing() -> None:
    log = seeded()
    headset = s.CATALOGUE["HEADSET-BT"]
    lines = (("MOUSE-WL", 2), ("HEADSET-BT", headset.initial + 1))
    assert reserve(log, "o1", lines) == s.REJECTED
    r = log.inv.reservations["o1"]
    assert r.shortage == {"sku": "HEADSET-BT", "requested": headset.initial + 1,
                          "available": headset.initial}
    assert log.inv.stock("MOUSE-WL").reserved == 0  # nothing stays reserved
    conserved(log)


def test_release_gives_the_stock_back_and_commit_ships_it() -> None:
    log = seeded()
    assert reserve(log, "o1", (("LAPTOP-14", 2),)) == s.RESERVED
    assert reserve(log, "o2", (("LAPTOP-14", 3),)) == s.RESERVED
    laptop = log.inv.stock("LAPTOP-14")
    assert (laptop.available, laptop.reserved) == (s.CATALOGUE["LAPTOP-14"].initial - 5, 5)
    log.append(s.reservation_stream("o1"), s.released(log.inv.reservations["o1"]))
    settle(log, "o1")
    log.append(s.reservation_stream("o2"), s.committed(log.inv.reservations["o2"]))
    settle(log, "o2")
    laptop = log.inv.stock("LAPTOP-14")
    assert (laptop.reserved, laptop.sold) == (0, 3)
    conserved(log)
    with pytest.raises(s.StockRuleError) as err:
        s.released(log.inv.reservations["o2"])
    assert err.value.reason == "already_committed"


def test_a_release_before_the_reservation_closes_the_order() -> None:
    """The reserve request was slow; the saga compensated first. The late reserve finds the
    order released and takes no stock."""
    log = seeded()
    log.append(s.reservation_stream("late"), s.released(log.inv.reservation("late")))
    assert reserve(log, "late", (("MOUSE-WL", 1),)) == s.RELEASED
    assert log.inv.stock("MOUSE-WL").reserved == 0


def test_a_hold_happens_once_per_order_and_sku() -> None:
    log = seeded()
    mouse = log.inv.stock("MOUSE-WL")
    ev = s.hold(mouse, "o1", 1)
    assert ev is not None and ev.id == s.hold(mouse, "o1", 5).id  # id names (sku, order)
    log.append(s.stock_stream("MOUSE-WL"), ev, mouse.version)
    assert s.hold(log.inv.stock("MOUSE-WL"), "o1", 1) is None


def test_unknown_skus_and_bad_lines() -> None:
    log = seeded()
    with pytest.raises(s.StockRuleError) as err:
        s.check_known(log.inv, (("NOPE", 1),))
    assert (err.value.reason, err.value.details) == ("unknown_sku", {"sku": "NOPE"})
    for bad in ([], [{"sku": "A", "quantity": 0}], [{"sku": "A", "quantity": 1.5}],
                [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}]):
        with pytest.raises(s.StockRuleError):
            s.make_lines(bad)


def _order_event(n: int, order_id: str, ev: NewEvent) -> RecordedEvent:
    return RecordedEvent(ev.id, o.stream_id(order_id), n, n, ev.type, 1, dict(ev.data),
                         dict(ev.metadata), AT)


def _book() -> o.OrderBook:
    """o-1 PENDING, o-2 CANCELLED, o-3 CONFIRMED: each 2 mice and 1 headset."""
    book = o.OrderBook()
    lines = [{"sku": "MOUSE-WL", "quantity": 2, "price": 2_500},
             {"sku": "HEADSET-BT", "quantity": 1, "price": 5_900}]
    for n, oid in enumerate(("o-1", "o-2", "o-3"), 1):
        book.apply(_order_event(n, oid, o.place(o.Order(oid), "alice", lines)))
    book.apply(_order_event(4, "o-2", NewEvent(o.ORDER_CANCELLED, {"order_id": "o-2"})))
    book.apply(_order_event(5, "o-3", NewEvent(o.ORDER_CONFIRMED, {"order_id": "o-3"})))
    return book


def test_a_reservation_must_match_a_pending_order_of_the_log() -> None:
    book = _book()
    # The order's lines, in any order: no error.
    s.check_reservable(book, "o-1", (("HEADSET-BT", 1), ("MOUSE-WL", 2)))
    s.check_reservable(book, "o-1", (("MOUSE-WL", 2), ("HEADSET-BT", 1)))
    for oid, lines, kw, reason in (
        ("nope", (("MOUSE-WL", 2), ("HEADSET-BT", 1)), {}, "order_not_found"),
        ("o-2", (("MOUSE-WL", 2), ("HEADSET-BT", 1)), {}, "order_not_pending"),
        ("o-3", (("MOUSE-WL", 2), ("HEADSET-BT", 1)), {}, "order_not_pending"),
        ("o-1", (("MOUSE-WL", 2), ("HEADSET-BT", 1)), {"withdrawn": True}, "order_not_pending"),
        ("o-1", (("MOUSE-WL", 2),), {}, "lines_mismatch"),  # a line missing
        ("o-1", (("MOUSE-WL", 2), ("HEADSET-BT", 3)), {}, "lines_mismatch"),  # more units
        ("o-1", (("MOUSE-WL", 2), ("LAPTOP-14", 1)), {}, "lines_mismatch"),  # another SKU
        ("o-1", (("MOUSE-WL", 2), ("HEADSET-BT", 1), ("LAPTOP-14", 1)), {}, "lines_mismatch"),
    ):
        with pytest.raises(s.StockRuleError) as err:
            s.check_reservable(book, oid, lines, **kw)
        assert err.value.reason == reason and oid in str(err.value)
    with pytest.raises(s.StockRuleError) as err:
        s.check_reservable(book, "o-1", (("HEADSET-BT", 3),))
    assert "1 x HEADSET-BT, 2 x MOUSE-WL" in str(err.value)  # what the order holds
    assert err.value.details == {"order_lines": [{"sku": "MOUSE-WL", "quantity": 2},
                                                 {"sku": "HEADSET-BT", "quantity": 1}]}


def test_only_a_confirmed_order_is_committed() -> None:
    book = _book()
    s.check_committable(book, "o-3")
    for oid in ("nope", "o-1", "o-2"):
        with pytest.raises(s.StockRuleError) as err:
            s.check_committable(book, oid)
        assert err.value.reason == "order_not_confirmed" and oid in str(err.value)
        assert "only for a CONFIRMED order" in str(err.value)


ops = st.lists(st.tuples(st.sampled_from(["reserve", "release", "commit"]), st.integers(0, 9),
                         st.lists(st.tuples(st.sampled_from(sorted(s.CATALOGUE)),
                                            st.integers(1, 8)),
                                  min_size=1, max_size=3, unique_by=lambda t: t[0])),
               max_size=60)


@settings(max_examples=80)
@given(ops)
def test_stock_is_never_oversold_and_always_conserved(steps: list) -> None:
    log = seeded()
    for op, n, lines in steps:
        oid = f"o{n}"
        r = log.inv.reservation(oid)
        if op == "reserve":
            reserve(log, oid, tuple(lines))
        else:
            try:
                ev = s.released(r) if op == "release" else s.committed(r)
            except s.StockRuleError:
                continue
            log.append(s.reservation_stream(oid), ev)
            settle(log, oid)
        conserved(log)
    for oid, r in log.inv.reservations.items():
        held = {sku for sku, stock in log.inv.stocks.items() if oid in stock.holds}
        # Only an active reservation holds stock, and it holds every one of its lines.
        assert held == ({sku for sku, _ in r.lines} if r.status == s.RESERVED else set())
