"""What must be true once every saga has ended, checked against the running system.

Reads the participants' own answers over HTTP (accounts, payments, stock, orders) and the event
store (saga streams, reservation decisions, every PaymentCharged ever recorded), then checks:

- money: the total over all accounts equals the total opened and funded with (the admin
  command); the merchant received
  exactly the charged payments and each customer paid exactly their charged payments;
- no order was ever charged twice (PaymentCharged events per order in the log);
- stock: for every SKU, `available + reserved + sold == initial`, and what is reserved or sold
  is exactly what CONFIRMED orders hold (so stock + reserved-for-confirmed == initial);
- orders: CONFIRMED exactly when the payment is CHARGED (right account and amount) and the
  stock is RESERVED (the order's lines); CANCELLED otherwise: no money kept, no stock held;
  nothing charged or reserved for an order that is not CONFIRMED;
- sagas: completed <=> its order CONFIRMED; compensated => its order CANCELLED (or never
  created); failed (a compensation refused) is a violation.

Sagas that have not ended yet are reported as `unfinished`; their orders are skipped. Those
the orchestrator gave up on (`SagaStuck`) are also listed as `stuck`, with the error: they
will not end until an operator retries them (`labkit saga retry ID`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ecommerce.domain import payments as pay
from ecommerce.domain import saga as s
from ecommerce.domain import stock as st
from ecommerce.store.base import EventStore

HttpFor = Callable[[str], httpx.Client]


@dataclass
class SystemState:
    accounts: list[dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    stock: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]
    reservations: dict[str, st.Reservation]
    charges_in_log: Counter
    sagas: dict[str, s.SagaState]


@dataclass
class InvariantReport:
    violations: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: "<saga id>: <error>" for every stuck saga (also in `unfinished`).
    stuck: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(http: HttpFor, service: str, path: str, **params: Any) -> Any:
    r = http(service).get(path, params=params or None)
    r.raise_for_status()
    return r.json()


def _orders(http: HttpFor) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = _get(http, "order-service", "/api/orders", limit=1000, offset=offset)
        for o in page["orders"]:
            out[o["order_id"]] = o
        offset += len(page["orders"])
        if not page["orders"] or offset >= page["total"]:
            return out


def _fold_log(store: EventStore, types: Iterable[str], prefix: str | None = None
              ) -> Iterable[Any]:
    after = 0
    types = list(types)
    while True:
        batch = store.read_all(after, 5000, stream_prefix=prefix, types=types)
        yield from batch
        if len(batch) < 5000:
            return
        after = batch[-1].position


def snapshot(http: HttpFor, store: EventStore) -> SystemState:
    """Read everything the checks need (the sagas first: orders of later sagas are skipped)."""
    sagas: dict[str, s.SagaState] = {}
    for e in _fold_log(store, [s.SAGA_STARTED, s.STEP_FAILED, *s.TERMINAL_EVENTS,
                               *s.STUCK_EVENTS], s.STREAM_PREFIX):
        sid = s.saga_id_of(e.stream_id)
        sagas[sid] = s.apply(sagas.get(sid) or s.SagaState(sid), e.type, e.data, e.version,
                             e.recorded_iso)
    inv = st.Inventory()
    for e in _fold_log(store, st.RESERVATION_EVENTS, st.RESERVATION_PREFIX):
        inv.apply(e)
    charges = Counter(e.data["order_id"]
                      for e in _fold_log(store, [pay.PAYMENT_CHARGED], pay.STREAM_PREFIX))
    accounts = _get(http, "payment-service", "/api/payments/accounts")["accounts"]
    payments = {p["order_id"]: p for p in _get(http, "payment-service", "/api/payments")["payments"]}
    stock = {i["sku"]: i for i in _get(http, "inventory-service", "/api/inventory")["items"]}
    return SystemState(accounts, payments, stock, _orders(http), inv.reservations, charges, sagas)


def check_state(state: SystemState) -> InvariantReport:
    """The invariants over a snapshot (pure)."""
    v: list[str] = []
    unfinished = sorted(sid for sid, sg in state.sagas.items() if not sg.terminal)
    in_flight = {state.sagas[sid].order_id for sid in unfinished}

    # -- money ------------------------------------------------------------------------------
    total = sum(a["balance"] for a in state.accounts)
    opened = sum(a["initial_balance"] + a.get("funded", 0) for a in state.accounts)
    if total != opened:
        v.append(f"money: accounts hold {total} cents in total, but {opened} were opened and "
                 "funded with")
    charged = {oid: p for oid, p in state.payments.items() if p["status"] == pay.CHARGED}
    paid_by: Counter = Counter()
    for p in charged.values():
        paid_by[p["account_id"]] += p["amount"]
    for a in state.accounts:
        moved = a["initial_balance"] + a.get("funded", 0) - a["balance"]
        if a["account_id"] == pay.MERCHANT:
            if -moved != sum(paid_by.values()):
                v.append(f"money: merchant received {-moved} cents, but charged payments "
                         f"total {sum(paid_by.values())}")
        elif moved != paid_by.get(a["account_id"], 0):
            v.append(f"money: account {a['account_id']} paid {moved} cents, but its charged "
                     f"payments total {paid_by.get(a['account_id'], 0)}")
    for oid, n in state.charges_in_log.items():
        if n > 1:
            v.append(f"payment: order {oid} was charged {n} times")

    # -- stock -------------------------------------------------------------------------------
    held_by_confirmed: Counter = Counter()
    for oid, o in state.orders.items():
        if o["status"] == "CONFIRMED" and oid not in in_flight:
            for ln in o["lines"]:
                held_by_confirmed[ln["sku"]] += ln["quantity"]
    in_flight_held: Counter = Counter()
    for oid in in_flight:
        r = state.reservations.get(oid)
        if r is not None and r.status in (st.RESERVED, st.COMMITTED):
            for sku, q in r.lines:
                in_flight_held[sku] += q
    for sku, item in state.stock.items():
        if item["available"] + item["reserved"] + item["sold"] != item["initial"]:
            v.append(f"stock: {sku} available {item['available']} + reserved {item['reserved']} "
                     f"+ sold {item['sold']} != initial {item['initial']}")
        held = item["reserved"] + item["sold"] - in_flight_held.get(sku, 0)
        if held != held_by_confirmed.get(sku, 0):
            v.append(f"stock: {sku} has {held} units reserved or sold, but confirmed orders "
                     f"hold {held_by_confirmed.get(sku, 0)}")

    # -- orders ------------------------------------------------------------------------------
    for oid, o in state.orders.items():
        if oid in in_flight:
            continue
        pay_ = state.payments.get(oid)
        res = state.reservations.get(oid)
        is_charged = pay_ is not None and pay_["status"] == pay.CHARGED
        is_reserved = res is not None and res.status in (st.RESERVED, st.COMMITTED)
        if o["status"] == "CONFIRMED":
            if not is_charged:
                v.append(f"order {oid} is CONFIRMED but its payment is "
                         f"{pay_['status'] if pay_ else 'missing'}")
            elif pay_ is not None and (pay_["amount"] != o["total"]
                                       or pay_["account_id"] != o["user_id"]):
                v.append(f"order {oid} total {o['total']} of {o['user_id']} was charged "
                         f"{pay_['amount']} to {pay_['account_id']}")
            if not is_reserved:
                v.append(f"order {oid} is CONFIRMED but its stock is "
                         f"{res.status if res else 'not reserved'}")
            elif res is not None and sorted(res.lines) != sorted(
                    (ln["sku"], ln["quantity"]) for ln in o["lines"]):
                v.append(f"order {oid} reserved {res.lines}, not its lines")
        elif o["status"] == "CANCELLED":
            if is_charged:
                v.append(f"order {oid} is CANCELLED but its payment is still CHARGED")
            if is_reserved and res is not None:
                v.append(f"order {oid} is CANCELLED but its stock is still {res.status}")
        else:
            v.append(f"order {oid} is {o['status']} although its saga has ended")
    for oid in charged:
        if oid not in in_flight and oid not in state.orders:
            v.append(f"payment: order {oid} does not exist but was charged")
    for oid, r in state.reservations.items():
        if oid in in_flight or r.status not in (st.RESERVED, st.COMMITTED):
            continue
        if oid not in state.orders:
            v.append(f"stock: order {oid} does not exist but holds stock")

    # -- sagas -------------------------------------------------------------------------------
    counts: Counter = Counter(sg.status for sg in state.sagas.values())
    for sid, sg in state.sagas.items():
        if not sg.terminal:
            continue
        order = state.orders.get(sg.order_id)
        status = order["status"] if order else None
        if sg.status == "completed" and status != "CONFIRMED":
            v.append(f"saga {sid} completed but order {sg.order_id} is {status}")
        elif sg.status == "compensated" and status not in (None, "CANCELLED"):
            v.append(f"saga {sid} compensated but order {sg.order_id} is {status}")
        elif sg.status == "failed":
            v.append(f"saga {sid} failed ({sg.failure}): a compensation was refused")
    stuck = [f"{sid}: {sg.stuck_error}" for sid, sg in sorted(state.sagas.items())
             if sg.status == "stuck"]
    return InvariantReport(v, unfinished, dict(counts), stuck)


def check(lab: Any, store: EventStore | None = None) -> InvariantReport:
    """Check every invariant against a running lab (`lab.http(name)` for each participant)."""
    if store is None:
        store = lab.saga.store
    return check_state(snapshot(lab.http, store))


def violations(lab: Any, store: EventStore | None = None) -> list[str]:
    """The violated invariants, as sentences (empty: everything holds)."""
    return check(lab, store).violations
