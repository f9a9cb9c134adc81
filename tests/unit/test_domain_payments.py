"""Payments: money only moves between accounts, an order is charged at most once, refunds and
voids; plus the idempotency helpers every participant uses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecommerce.domain import orders as o
from ecommerce.domain import payments as pay
from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.domain.idempotency import Replies, event_id, reply_metadata, request_event_id

AT = "2026-01-05T10:00:00+00:00"


class Log:
    """In-memory log: ids stored once (anywhere), expected versions checked."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.ledger = pay.Ledger()

    def append(self, account: str, ev: NewEvent, expected: int | None = None) -> bool:
        stream = pay.stream_id(account)
        if any(e.id == ev.id for e in self.events):
            return False
        version = sum(1 for e in self.events if e.stream_id == stream)
        assert expected is None or expected == version
        rec = RecordedEvent(ev.id, stream, version + 1, len(self.events) + 1, ev.type, 1,
                            dict(ev.data), dict(ev.metadata), AT)
        self.events.append(rec)
        self.ledger.apply(rec)
        return True

    def open(self, account: str, balance: int) -> None:
        ev = pay.open_account(self.ledger, account, balance)
        assert ev is not None
        self.append(account, ev)

    def charge(self, order: str, account: str, amount: int, key: str = "k") -> str:
        ev = pay.charge(self.ledger, order, account, amount, attempt=key)
        if ev is None:
            return "repeat"
        self.append(account, ev, self.ledger.account(account).version)
        return ev.type

    def refund(self, order: str) -> str | None:
        todo = pay.refund(self.ledger, order)
        if todo is None:
            return None
        account, ev = todo
        stored = self.append(account, ev)
        return ev.type if stored else "blocked"


def books() -> Log:
    log = Log()
    log.open(pay.MERCHANT, 0)
    log.open("alice", 10_000)
    log.open("bob", 500)
    return log


def balances(log: Log) -> dict[str, int]:
    return {a: x.balance for a, x in log.ledger.accounts.items() if x.opened}


def test_a_charge_moves_money_from_customer_to_merchant() -> None:
    log = books()
    assert log.charge("o1", "alice", 2_999) == pay.PAYMENT_CHARGED
    assert balances(log) == {pay.MERCHANT: 2_999, "alice": 7_001, "bob": 500}
    assert log.ledger.total_balance() == 10_500
    p = log.ledger.payments["o1"]
    assert (p.status, p.amount, p.balance_after, p.payment_id) == (
        pay.CHARGED, 2_999, 7_001, pay.charge_id("o1"))


def test_short_balance_is_declined_and_recorded() -> None:
    log = books()
    assert log.charge("o1", "bob", 501) == pay.PAYMENT_DECLINED
    assert balances(log)["bob"] == 500 and log.ledger.declined == 1
    assert "o1" not in log.ledger.payments  # a later attempt (another key) may still pay


def test_an_order_is_charged_at_most_once() -> None:
    log = books()
    log.charge("o1", "alice", 1_000, key="first")
    assert log.charge("o1", "alice", 1_000, key="second") == "repeat"
    with pytest.raises(pay.PaymentRuleError) as err:
        pay.charge(log.ledger, "o1", "alice", 2_000, attempt="third")
    assert err.value.reason == "already_charged"
    # Even on another account, the charge's id (derived from the order) is already stored.
    assert log.append("bob", NewEvent(pay.PAYMENT_CHARGED, {}, id=pay.charge_id("o1"))) is False
    assert balances(log)["alice"] == 9_000


def test_refund_gives_the_money_back_once() -> None:
    log = books()
    log.charge("o1", "alice", 4_000)
    assert log.refund("o1") == pay.PAYMENT_REFUNDED
    assert log.refund("o1") is None
    assert balances(log) == {pay.MERCHANT: 0, "alice": 10_000, "bob": 500}
    with pytest.raises(pay.PaymentRuleError) as err:
        pay.charge(log.ledger, "o1", "alice", 4_000, attempt="again")
    assert err.value.reason == "already_refunded"


def test_refund_before_charge_voids_the_order() -> None:
    """The charge request was slow, the saga compensated first: the late charge cannot land."""
    log = books()
    assert log.refund("late") == pay.PAYMENT_VOIDED
    void = next(e for e in log.events if e.type == pay.PAYMENT_VOIDED)
    assert void.id == pay.charge_id("late") and void.stream_id == pay.stream_id(pay.MERCHANT)
    with pytest.raises(pay.PaymentRuleError):
        pay.charge(log.ledger, "late", "alice", 100, attempt="k")
    assert balances(log)["alice"] == 10_000


def test_rules() -> None:
    log = books()
    for args, reason in [(("o", "nobody", 1), "not_found"),
                         (("o", pay.MERCHANT, 1), "invalid_account"),
                         (("o", "alice", 0), "invalid_amount"),
                         (("o", "alice", 1.5), "invalid_amount")]:
        with pytest.raises(pay.PaymentRuleError) as err:
            pay.charge(log.ledger, *args, attempt="k")
        assert err.value.reason == reason
    assert pay.open_account(log.ledger, "alice", 10_000) is None  # idempotent
    with pytest.raises(pay.PaymentRuleError) as err:
        pay.open_account(log.ledger, "alice", 5)
    assert err.value.reason == "already_exists"


@settings(max_examples=80)
@given(st.lists(st.tuples(st.sampled_from(["charge", "refund"]), st.integers(0, 6),
                          st.sampled_from(["alice", "bob", "carol"]), st.integers(1, 6_000)),
                max_size=60))
def test_money_is_conserved_and_never_overdrawn(steps: list) -> None:
    log = books()
    log.open("carol", 3_000)
    start = log.ledger.total_balance()
    for op, n, account, amount in steps:
        try:
            if op == "charge":
                log.charge(f"o{n}", account, amount, key=f"k{len(log.events)}")
            else:
                log.refund(f"o{n}")
        except pay.PaymentRuleError:
            pass
        assert log.ledger.total_balance() == start
        assert all(b >= 0 for b in balances(log).values())
    charged = sum(p.amount for p in log.ledger.payments.values() if p.status == pay.CHARGED)
    assert balances(log)[pay.MERCHANT] == charged


def test_idempotency_ids_are_deterministic() -> None:
    assert event_id("a", "b") == event_id("a", "b") != event_id("a", "b", "c")
    assert event_id("ab", "c") != event_id("a", "bc")
    assert request_event_id("svc", "key", 0) != request_event_id("svc", "key", 1)


def test_replies_keep_the_first_answer() -> None:
    replies = Replies(limit=2)
    replies.observe(reply_metadata("charge/o1", "k1", 201, {"status": "CHARGED"}))
    replies.record("charge/o1", "k1", 409, {"reason": "declined"})
    assert replies.get("charge/o1", "k1") == (201, {"status": "CHARGED"})
    assert replies.get("refund/o1", "k1") is None  # keys are per endpoint
    replies.record("a", "k2", 200, {})
    replies.record("a", "k3", 200, {})
    assert len(replies) == 2 and replies.get("charge/o1", "k1") is None  # oldest forgotten
    replies.observe({"unrelated": True})
    assert len(replies) == 2


# -- what a charge may pay for ------------------------------------------------------------------


def _order_event(n: int, order_id: str, ev: NewEvent) -> RecordedEvent:
    return RecordedEvent(ev.id, o.stream_id(order_id), n, n, ev.type, 1, dict(ev.data),
                         dict(ev.metadata), AT)


def test_a_charge_must_match_a_pending_order_of_the_log() -> None:
    payable = pay.Payable()
    line = {"sku": "MOUSE-WL", "quantity": 2, "price": 2_500}
    for n, oid in enumerate(("o-1", "o-2", "o-3"), 1):
        payable.apply(_order_event(n, oid, o.place(o.Order(oid), "alice", [line])))
    payable.apply(_order_event(4, "o-2", NewEvent(o.ORDER_CANCELLED, {"order_id": "o-2"})))
    payable.apply(_order_event(5, "o-3", NewEvent(o.ORDER_CONFIRMED, {"order_id": "o-3"})))

    pay.check_chargeable(payable, "o-1", "alice", 5_000)  # the order as placed: no error
    for args, kw, reason in (
        (("nope", "alice", 5_000), {}, "order_not_found"),
        (("o-2", "alice", 5_000), {}, "order_not_pending"),
        (("o-3", "alice", 5_000), {}, "order_not_pending"),
        (("o-1", "alice", 5_000), {"withdrawn": True}, "order_not_pending"),
        (("o-1", "mallory", 5_000), {}, "account_mismatch"),
        (("o-1", "alice", 4_999), {}, "amount_mismatch"),
    ):
        with pytest.raises(pay.PaymentRuleError) as err:
            pay.check_chargeable(payable, *args, **kw)
        assert err.value.reason == reason and args[0] in str(err.value)
