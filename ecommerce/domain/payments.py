"""Payments: accounts and the money that moves between them, in streams `payment-<account_id>`.

Money is an integer number of cents. It comes in only through the admin command that funds an
account (`AccountFunded`, recorded with the amount), and never appears or disappears otherwise:
every event that moves money moves it *from one account to another in that one event*
(`PaymentCharged`: customer -> merchant; `PaymentRefunded`: merchant -> customer), so the sum of
all balances equals the sum of the opening balances and fundings at every position of the log.

A charge is appended to the customer's stream with its expected version, so the balance it
checked is the balance it spends (no overdraft under concurrency). Its event id is derived from
the order (`charge_id`), and the event store stores an id once: an order is charged at most once,
whatever the idempotency keys, replicas or accounts of the retries. A refund of an order that was
never charged records `PaymentVoided` in the merchant's stream *under that same id*, so a charge
arriving after its compensation (a slow request) can no longer happen.

A charge pays for an order, and only for one that can still be paid: payment-service folds the
orders from the shared log (`Payable`) and refuses a new charge unless the order exists, is
PENDING and not withdrawn, the account is the order's customer's and the amount is the order's
total (`check_chargeable`), whoever calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecommerce.domain import orders as o
from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.domain.idempotency import event_id

#: The account that receives every charge.
MERCHANT = "merchant"
STREAM_PREFIX = "payment-"

ACCOUNT_OPENED = "AccountOpened"
ACCOUNT_FUNDED = "AccountFunded"
PAYMENT_CHARGED = "PaymentCharged"
PAYMENT_DECLINED = "PaymentDeclined"
PAYMENT_REFUNDED = "PaymentRefunded"
PAYMENT_VOIDED = "PaymentVoided"
PAYMENT_EVENTS = (ACCOUNT_OPENED, ACCOUNT_FUNDED, PAYMENT_CHARGED, PAYMENT_DECLINED, PAYMENT_REFUNDED,
                  PAYMENT_VOIDED)

CHARGED, REFUNDED, VOIDED = "CHARGED", "REFUNDED", "VOIDED"
#: Largest opening balance or charge, in cents.
MAX_AMOUNT = 1_000_000_000_000


class PaymentRuleError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stream_id(account_id: str) -> str:
    return STREAM_PREFIX + account_id


def charge_id(order_id: str) -> str:
    """The id of the one charge an order may ever have (and of its void)."""
    return event_id("payment", "charge", order_id)


@dataclass
class Account:
    account_id: str
    balance: int = 0
    initial: int = 0
    opened: bool = False
    #: Version of the account's stream (the expected version of its next append).
    version: int = 0
    #: Money put in by the admin command since the opening, in cents.
    funded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "balance": self.balance,
                "initial_balance": self.initial, "funded": self.funded, "version": self.version}


@dataclass
class Payment:
    order_id: str
    status: str
    account_id: str | None = None
    amount: int = 0
    payment_id: str | None = None
    #: The customer's balance right after the charge.
    balance_after: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "status": self.status, "account_id": self.account_id,
                "amount": self.amount, "payment_id": self.payment_id}


class Ledger:
    """Every account and every order's payment, folded from the `payment-*` streams."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.payments: dict[str, Payment] = {}
        self.declined = 0

    def account(self, account_id: str) -> Account:
        acct = self.accounts.get(account_id)
        if acct is None:
            acct = self.accounts[account_id] = Account(account_id)
        return acct

    def total_balance(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    def apply(self, event: RecordedEvent) -> None:
        t, d = event.type, event.data
        self.account(event.stream_id[len(STREAM_PREFIX):]).version = event.version
        if t == ACCOUNT_OPENED:
            acct = self.account(d["account_id"])
            acct.opened, acct.initial = True, d["initial_balance"]
            acct.balance += d["initial_balance"]
        elif t == ACCOUNT_FUNDED:
            acct = self.account(d["account_id"])
            acct.balance += d["amount"]
            acct.funded += d["amount"]
        elif t == PAYMENT_CHARGED:
            amount = d["amount"]
            self.account(d["account_id"]).balance -= amount
            self.account(d["merchant"]).balance += amount
            self.payments[d["order_id"]] = Payment(d["order_id"], CHARGED, d["account_id"], amount,
                                                   d["payment_id"], d["balance_after"])
        elif t == PAYMENT_REFUNDED:
            amount = d["amount"]
            self.account(d["merchant"]).balance -= amount
            self.account(d["account_id"]).balance += amount
            p = self.payments.get(d["order_id"])
            if p is not None:
                p.status = REFUNDED
        elif t == PAYMENT_VOIDED:
            self.payments.setdefault(d["order_id"], Payment(d["order_id"], VOIDED))
        elif t == PAYMENT_DECLINED:
            self.declined += 1


def _amount(value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_AMOUNT:
        raise PaymentRuleError("invalid_amount",
                               f"amounts are integer cents from {low} to {MAX_AMOUNT}; got {value!r}")
    return value


def open_account(ledger: Ledger, account_id: str, initial_balance: int) -> NewEvent | None:
    """Open an account. None: it is open already with this opening balance (idempotent)."""
    initial = _amount(initial_balance, 0)
    acct = ledger.accounts.get(account_id)
    if acct is not None and acct.opened:
        if acct.initial == initial:
            return None
        raise PaymentRuleError("already_exists",
                               f"account {account_id} is open with opening balance {acct.initial}")
    return NewEvent(ACCOUNT_OPENED, {"account_id": account_id, "initial_balance": initial},
                    id=event_id("payment", "open", account_id))


def fund(ledger: Ledger, account_id: str, amount: int, *, ident: str) -> list[NewEvent]:
    """Put money into an account (the admin command), opening it first if needed. `ident`
    makes the event id (the request's key): a retried request funds once."""
    amount = _amount(amount, 1)
    if account_id == MERCHANT:
        raise PaymentRuleError("invalid_account", "the merchant's money comes from charges only")
    out = [] if (acct := ledger.accounts.get(account_id)) is not None and acct.opened else [
        NewEvent(ACCOUNT_OPENED, {"account_id": account_id, "initial_balance": 0},
                 id=event_id("payment", "open", account_id))]
    balance = acct.balance if acct is not None else 0
    out.append(NewEvent(ACCOUNT_FUNDED, {"account_id": account_id, "amount": amount,
                                         "balance_after": balance + amount},
                        id=event_id("payment", "fund", account_id, ident)))
    return out


def charge(ledger: Ledger, order_id: str, account_id: str, amount: int, *, attempt: str,
           decline: str | None = None) -> NewEvent | None:
    """Move `amount` from the account to the merchant for the order.

    Returns `PaymentCharged`, or `PaymentDeclined` (insufficient funds, or `decline` given: an
    injected refusal), which is recorded too so a retry gets the same answer. None: this exact
    charge happened already. `attempt` (the idempotency key) tells declines apart.
    """
    amount = _amount(amount, 1)
    p = ledger.payments.get(order_id)
    if p is not None:
        if p.status == CHARGED and p.account_id == account_id and p.amount == amount:
            return None
        if p.status == CHARGED:
            raise PaymentRuleError("already_charged",
                                   f"order {order_id} was charged {p.amount} to {p.account_id}")
        raise PaymentRuleError("already_refunded",
                               f"the payment of order {order_id} was refunded or voided; "
                               "it cannot be charged again")
    if account_id == MERCHANT:
        raise PaymentRuleError("invalid_account", "the merchant cannot pay itself")
    acct = ledger.accounts.get(account_id)
    if acct is None or not acct.opened:
        raise PaymentRuleError("not_found", f"account {account_id!r} does not exist")
    if decline is None and amount > acct.balance:
        decline = "insufficient_funds"
    if decline is not None:
        return NewEvent(PAYMENT_DECLINED, {"order_id": order_id, "account_id": account_id,
                                           "amount": amount, "balance": acct.balance,
                                           "reason": decline},
                        id=event_id("payment", "decline", order_id, attempt))
    pid = charge_id(order_id)
    return NewEvent(PAYMENT_CHARGED, {"order_id": order_id, "account_id": account_id,
                                      "merchant": MERCHANT, "amount": amount,
                                      "balance_after": acct.balance - amount, "payment_id": pid},
                    id=pid)


#: The order events payment-service folds to know what may be charged (`Payable`).
ORDER_TERMS_EVENTS = o.ORDER_EVENTS

#: The orders of the log, folded by the orders domain (`orders.OrderBook`, shared with
#: inventory-service): payment-service needs their customer, total and status.
Payable = o.OrderBook


def check_chargeable(payable: o.OrderBook, order_id: str, account_id: str, amount: int, *,
                     withdrawn: bool = False) -> None:
    """Raise `PaymentRuleError` unless a new charge of `amount` from `account_id` may pay for
    the order: it exists in the log, is PENDING and not withdrawn by a compensation
    (`withdrawn`), `account_id` is its customer's and `amount` its total.

    Reasons: `order_not_found`, `order_not_pending`, `account_mismatch`, `amount_mismatch`.
    """
    try:
        terms = payable.pending(order_id, "a charge", withdrawn=withdrawn)
    except o.OrderRuleError as exc:
        raise PaymentRuleError(exc.reason, str(exc)) from None
    if account_id != terms.user_id:
        raise PaymentRuleError("account_mismatch",
                               f"order {order_id} is paid from its customer's account "
                               f"{terms.user_id!r}, not from {account_id!r}")
    if amount != terms.total:
        raise PaymentRuleError("amount_mismatch",
                               f"order {order_id} costs {terms.total} cents (its total); a "
                               f"charge of {amount} is refused")


def refund(ledger: Ledger, order_id: str) -> tuple[str, NewEvent] | None:
    """(account whose stream records it, event) that undoes the order's payment.

    Charged: `PaymentRefunded` (merchant -> customer). Never charged: `PaymentVoided` in the
    merchant's stream, which blocks a late charge. None: refunded or voided already.
    """
    p = ledger.payments.get(order_id)
    if p is None:
        return MERCHANT, NewEvent(PAYMENT_VOIDED, {"order_id": order_id}, id=charge_id(order_id))
    if p.status != CHARGED:
        return None
    assert p.account_id is not None
    balance = ledger.account(p.account_id).balance + p.amount
    return p.account_id, NewEvent(
        PAYMENT_REFUNDED, {"order_id": order_id, "account_id": p.account_id, "merchant": MERCHANT,
                           "amount": p.amount, "balance_after": balance,
                           "payment_id": p.payment_id},
        id=event_id("payment", "refund", order_id))
