"""The invariant checks find each kind of broken state (and accept a correct one)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

import pytest

from ecommerce.domain import saga as s
from ecommerce.domain import stock as st
from labkit.ops.invariants import SystemState, check_state


def saga(sid: str, oid: str, status: str) -> s.SagaState:
    return s.SagaState(sid, status=status, order_id=oid)  # type: ignore[arg-type]


def good() -> SystemState:
    """o1 confirmed (2 mice, 5000 charged), o2 cancelled (refunded, released)."""
    return SystemState(
        accounts=[{"account_id": "merchant", "balance": 5000, "initial_balance": 0},
                  {"account_id": "alice", "balance": 95000, "initial_balance": 100000}],
        payments={"o1": {"order_id": "o1", "status": "CHARGED", "account_id": "alice",
                         "amount": 5000},
                  "o2": {"order_id": "o2", "status": "REFUNDED", "account_id": "alice",
                         "amount": 2500}},
        stock={"MOUSE-WL": {"sku": "MOUSE-WL", "available": 98, "reserved": 2, "sold": 0,
                            "initial": 100}},
        orders={"o1": {"order_id": "o1", "status": "CONFIRMED", "user_id": "alice", "total": 5000,
                       "lines": [{"sku": "MOUSE-WL", "quantity": 2, "price": 2500}]},
                "o2": {"order_id": "o2", "status": "CANCELLED", "user_id": "alice", "total": 2500,
                       "lines": [{"sku": "MOUSE-WL", "quantity": 1, "price": 2500}]}},
        reservations={"o1": st.Reservation("o1", st.RESERVED, (("MOUSE-WL", 2),)),
                      "o2": st.Reservation("o2", st.RELEASED, (("MOUSE-WL", 1),))},
        charges_in_log=Counter({"o1": 1, "o2": 1}),
        sagas={"s1": saga("s1", "o1", "completed"), "s2": saga("s2", "o2", "compensated")},
    )


def test_a_correct_state_has_no_violation() -> None:
    report = check_state(good())
    assert report.ok and report.violations == [] and report.unfinished == []
    assert report.counts == {"completed": 1, "compensated": 1}


def _money_created(x: SystemState) -> None:
    x.accounts[1]["balance"] += 1


def _double_charge(x: SystemState) -> None:
    x.charges_in_log["o1"] = 2


def _confirmed_unpaid(x: SystemState) -> None:
    x.payments["o1"]["status"] = "REFUNDED"
    x.accounts[0]["balance"], x.accounts[1]["balance"] = 0, 100000


def _cancelled_still_holding(x: SystemState) -> None:
    x.reservations["o2"] = st.Reservation("o2", st.RESERVED, (("MOUSE-WL", 1),))
    x.stock["MOUSE-WL"].update(available=97, reserved=3)


def _stock_lost(x: SystemState) -> None:
    x.stock["MOUSE-WL"]["available"] = 97


def _pending_after_end(x: SystemState) -> None:
    x.orders["o2"]["status"] = "PENDING"


def _saga_says_completed(x: SystemState) -> None:
    x.sagas["s2"] = saga("s2", "o2", "completed")


def _failed_saga(x: SystemState) -> None:
    x.sagas["s2"] = saga("s2", "o2", "failed")


def _wrong_amount(x: SystemState) -> None:
    x.payments["o1"]["amount"] = 4000
    x.accounts[0]["balance"], x.accounts[1]["balance"] = 4000, 96000


@pytest.mark.parametrize(("breakage", "words"), [
    (_money_created, "money"), (_double_charge, "charged 2 times"),
    (_confirmed_unpaid, "CONFIRMED but its payment"), (_cancelled_still_holding, "still RESERVED"),
    (_stock_lost, "!= initial"), (_pending_after_end, "PENDING"),
    (_saga_says_completed, "completed but order"), (_failed_saga, "compensation was refused"),
    (_wrong_amount, "was charged 4000"),
])
def test_each_breakage_is_reported(breakage: Callable[[SystemState], None], words: str) -> None:
    state = copy.deepcopy(good())
    breakage(state)
    report = check_state(state)
    assert any(words in v for v in report.violations), report.violations


def test_orders_of_unfinished_sagas_are_skipped() -> None:
    state = good()
    state.orders["o3"] = {"order_id": "o3", "status": "PENDING", "user_id": "alice", "total": 1,
                          "lines": [{"sku": "MOUSE-WL", "quantity": 1, "price": 1}]}
    state.sagas["s3"] = saga("s3", "o3", "running")
    report = check_state(state)
    assert report.ok and report.unfinished == ["s3"]
