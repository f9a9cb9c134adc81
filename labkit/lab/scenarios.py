"""Named saga scenarios for the notebook: `sid = lab.fire("payment-declined")`.

Each scenario sets up what it needs (a customer with an account, a fault on a participant, a
crash point), places one order as a saga and returns the saga id at once; `lab.saga.wait(sid)`
shows how it ended. Nothing is simulated: the refusals come from the participants' own rules
(a balance too small, stock too short, a user that does not exist) and the failures from their
fault injection (`/faults`) or from the orchestrator process really dying.

Preconditions are established, never assumed: the customer's balance is topped up and the
ordered stock restocked through the admin commands (`lab.admin`, recorded as events) when
earlier runs used them up, so every scenario gives the same outcome on the same data however
often it runs (a classroom day on one cluster).

- `happy`: every step succeeds -> completed.
- `payment-declined`: bob's balance is too small, payment-service refuses (409 declined)
  -> compensated: release stock, cancel order. Money can be added but not taken away: once
  bob has been funded enough to pay, a new customer `bob-<hex>` stands in (with a notice).
- `out-of-stock`: one unit more than the warehouse has -> compensated: cancel order.
- `invalid-user`: a user id nobody registered, user-service answers 404 -> compensated
  (nothing to undo).
- `payment-timeout`: payment-service answers too slowly until the step's deadline ->
  compensated: refund (the charge may have happened), release stock, cancel order.
- `inventory-flaky`: inventory-service answers 503 three times -> completed after retries.
- `orchestrator-crash`: the orchestrator process is SIGKILLed right after step N is recorded;
  a new one resumes -> completed, exactly like `happy`.
"""

from __future__ import annotations

import numbers
import uuid
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ecommerce.domain import saga as s
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.ops.refusal import refusal
from labkit.ops.unreachable import service_at, unreachable

SCENARIOS = ("happy", "payment-declined", "out-of-stock", "invalid-user", "payment-timeout",
             "inventory-flaky", "orchestrator-crash")

#: The lab's customers: alice can pay for anything, bob for almost nothing (integer cents).
ALICE, BOB = "alice", "bob"
RICH_BALANCE, POOR_BALANCE = 100_000_000, 1_000
#: What the default order buys.
#: MOUSE-WL: 10,000 in stock, so a class can fire `happy` all day without running out.
DEFAULT_LINES = (("MOUSE-WL", 1),)
SCARCE_SKU = "HEADSET-BT"
#: What payment-declined orders: more than bob's balance.
DECLINED_SKU = "MONITOR-27"


#: A refusal's reason -> the scenario that produces it.
_BY_FAILURE = {"declined": "payment-declined", "insufficient_stock": "out-of-stock",
               "invalid_user": "invalid-user", "inactive_user": "inactive-user"}
#: A step -> what a deadline there, or retries there, are called.
_TIMEOUT = {"charge_payment": "payment-timeout", "reserve_stock": "inventory-timeout",
            "create_order": "order-timeout", "validate_user": "user-timeout",
            "confirm_order": "order-timeout"}
_FLAKY = {"reserve_stock": "inventory-flaky", "charge_payment": "payment-flaky",
          "create_order": "order-flaky", "validate_user": "user-flaky",
          "confirm_order": "order-flaky"}


def scenario_of(state: s.SagaState) -> str:
    """What happened to a saga, named like the scenarios (`payment-declined`, `inventory-flaky`,
    `orchestrator-crash`, `happy`...), read from its own events: for a chart's labels, it works
    for any saga, also one placed by hand or by a widget, in both modes."""
    if state.faults.get("crash_after"):
        return "orchestrator-crash"
    if state.status in ("compensated", "compensating", "failed"):
        if state.failure == "deadline_exceeded":
            return _TIMEOUT.get(state.failed_step, "timeout")
        return _BY_FAILURE.get(state.failure, state.failure or "failed")
    # The saga's own steps (a plugin may have added one: 02's notify_customer), not ORDER_SAGA.
    retried = [st.name for st, act in zip(state.steps, state.actions, strict=True)
               if act.attempts > 1]
    if state.status == "completed":
        return _FLAKY.get(retried[0], "retried") if retried else "happy"
    return state.status


class ScenarioError(RuntimeError):
    """A scenario could not be set up; the message says what is missing."""


class ScenarioNotice(UserWarning):
    """A scenario ran with another set-up than usual, to end as its name says (shown every
    time, not once per place like other warnings)."""


warnings.simplefilter("always", ScenarioNotice)


def _check(r: httpx.Response, what: str, ok: Sequence[int]) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = {"detail": r.text}
    if r.status_code not in ok:
        raise ScenarioError(f"{what}: HTTP {r.status_code} {refusal(body)}")
    return body


def ensure_customer(lab: Any, user_id: str, balance: int = RICH_BALANCE,
                    name: str | None = None) -> None:
    """Register the user (command-service) and open their account (payment-service), once;
    top the account up to at least `balance` (the admin command) when it holds less."""
    r = lab.http("user-service").get(f"/api/users/{user_id}")
    if r.status_code == 404:
        _check(lab.http("command-service").post("/api/commands/create-user", json={
            "user_id": user_id, "name": name or user_id.title(),
            "email": f"{user_id}@example.com"}), f"create user {user_id}", (200, 201, 202, 409))
    else:
        _check(r, f"look up user {user_id}", (200,))
    _check(lab.http("payment-service").post(
        "/api/payments/accounts", json={"account_id": user_id}),
        f"open account {user_id}", (200, 201, 409))
    held = _balance(lab, user_id) or 0  # the account was opened just above
    if held < balance:
        _admin(lab, "fund", user_id, balance - held)


def ensure_stock(lab: Any, lines: Sequence[Any]) -> None:
    """Restock (the admin command) every SKU of the order that has fewer units available than
    ordered, back to at least its catalogue quantity."""
    from ecommerce.domain.stock import CATALOGUE

    for line in lines:
        sku, qty = (line["sku"], line["quantity"]) if isinstance(line, dict) else line[:2]
        have = available(lab, sku)
        if have < qty:
            item = CATALOGUE.get(sku)
            _admin(lab, "restock", sku, max(qty, item.initial if item else qty) - have)


def _admin(lab: Any, command: str, *args: Any) -> None:
    from labkit.ops.admin_client import AdminError

    try:
        getattr(lab.admin, command)(*args)
    except AdminError as exc:
        raise ScenarioError(f"the scenario needs `{command} {' '.join(map(str, args))}` first, "
                            f"and {exc}") from None


def available(lab: Any, sku: str) -> int:
    return int(_check(lab.http("inventory-service").get(f"/api/inventory/{sku}"),
                      f"stock of {sku}", (200,))["available"])


def fire(lab: Any, scenario: str, *, user: str | None = None,
         lines: Sequence[Any] | None = None, step: int | str | None = None, wait: bool = False,
         timeout: float = 60.0) -> str:
    """Start one scenario's saga; return its id (with `wait=True`, once it has ended).

    `user` / `lines` override the customer and the order; `step` is where `orchestrator-crash`
    kills the orchestrator (a step number 1-5 or name, default 3; the crash comes right after
    that step's StepSucceeded is recorded). Options that would make the scenario end otherwise
    than its name says (a rich customer for `payment-declined`, an order the warehouse can
    serve for `out-of-stock`, a registered user for `invalid-user`) are refused before
    anything is set up.
    """
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    _check_options(user, lines, timeout)
    if step is not None and scenario != "orchestrator-crash":
        raise ScenarioError(f"step is where orchestrator-crash crashes; {scenario} has no "
                            f"crash: leave step out (got step={step!r})")
    crash_step = _step_name(3 if step is None else step)
    try:
        return _fire(lab, scenario, user, lines, crash_step, wait, timeout)
    except httpx.TransportError as exc:  # a service the set-up needs is down: say which
        url = str(exc.request.url)
        raise ScenarioError(unreachable(service_at(url, lab.urls()), url, exc)) from None


def _check_options(user: str | None, lines: Sequence[Any] | None, timeout: float) -> None:
    """Refuse options that would be ignored or fail half-way, before anything is set up."""
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise ScenarioError(f"user is a user id like \"alice\" (or leave it out for the "
                            f"scenario's customer); got {user!r}")
    if lines is not None and (isinstance(lines, str) or not isinstance(lines, Sequence)
                              or not lines):
        raise ScenarioError(f"lines is a non-empty list of (sku, quantity), e.g. "
                            f"[(\"MOUSE-WL\", 1)] (or leave it out for the default order); "
                            f"got {lines!r}")
    if (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
            or not timeout >= 0):
        raise ScenarioError(f"timeout is a number of seconds >= 0; got {timeout!r}")


def _step_name(step: int | str) -> str:
    """The saga step `orchestrator-crash` crashes after: a number 1-5 or a step name."""
    if isinstance(step, str) and step in s.STEP_NAMES:
        return step
    number = step if isinstance(step, int) and not isinstance(step, bool) else (
        int(step) if isinstance(step, str) and step.isdigit() else None)
    if number is None or not 1 <= number <= len(s.STEP_NAMES):
        raise ScenarioError(f"step is where orchestrator-crash crashes: 1-{len(s.STEP_NAMES)} "
                            f"or one of {', '.join(s.STEP_NAMES)}; got {step!r}")
    return s.STEP_NAMES[number - 1]


def _fire(lab: Any, scenario: str, user: str | None, lines: Sequence[Any] | None,
          step: str, wait: bool, timeout: float) -> str:
    saga = lab.saga
    try:  # the order's own rules (SKUs, quantities, prices), before anything is set up
        priced = s.normalise_lines(lines, saga.prices()) if lines is not None else None
    except s.SagaRuleError as exc:
        raise ScenarioError(f"lines: {exc}") from None
    _warn_armed_faults(lab, scenario)
    order = list(lines or DEFAULT_LINES)
    customer = user or ALICE
    crash_after = None
    if scenario == "invalid-user":
        customer = user or f"ghost-{uuid.uuid4().hex[:8]}"
        if user is not None:
            _check_unregistered(lab, user)
    elif scenario == "payment-declined":
        order = list(lines or [(DECLINED_SKU, 1)])
        total = s.order_amount(priced or s.normalise_lines(order, saga.prices()))
        customer = _poor_customer(lab, user, total)
        ensure_customer(lab, customer, POOR_BALANCE)
    else:
        ensure_customer(lab, customer)
    if scenario == "out-of-stock":
        if priced is not None:
            _check_short(lab, priced)
        order = list(lines or [(SCARCE_SKU, available(lab, SCARCE_SKU) + 1)])
    elif scenario != "invalid-user":
        ensure_stock(lab, order)
    if scenario == "payment-timeout":
        # Each charge waits longer than the orchestrator's request timeout, until the step's
        # deadline passes (5 attempts with the default policy); one more delay hits the refund,
        # which is simply retried.
        policy = s.RetryPolicy()
        lab.faults.inject("payment-service", "delay", times=6,
                          seconds=policy.request_timeout + 0.5, path="/api/payments")
    elif scenario == "inventory-flaky":
        lab.faults.inject("inventory-service", "error", times=3,
                          path="/api/inventory/reservations")
    elif scenario == "orchestrator-crash":
        crash_after = f"{step}:{s.STEP_SUCCEEDED}"
    sid = saga.place_order(customer, order, crash_after=crash_after)
    if crash_after is not None:
        _restart_after_crash(lab, sid, crash_after, timeout)
    if wait:
        saga.wait(sid, timeout=timeout)
    return sid


def _warn_armed_faults(lab: Any, scenario: str) -> None:
    """Faults left armed (by hand, or by a scenario whose saga did not use them) change how
    a scenario ends: say which, so an unexpected outcome has its reason. They are kept: arming
    a fault and then firing (or running a checkpoint) is how a student breaks the system."""
    from labkit.ops.fault_client import FaultError

    try:
        armed = lab.faults.armed()
    except FaultError:
        return
    if not armed:
        return
    said = ", ".join(f"{f['service']} {f.get('mode')} x{f.get('times_left', '?')}"
                     + (f" on {f['path']}" if f.get("path") not in (None, "", "/", "/api/")
                        else "") for f in armed)
    warnings.warn(f"faults are armed and may change how {scenario} ends: {said} "
                  "(lab.faults.clear() disarms them)", ScenarioNotice, stacklevel=2)


def _check_unregistered(lab: Any, user: str) -> None:
    """invalid-user fails at validate_user only for an id nobody registered."""
    r = lab.http("user-service").get(f"/api/users/{quote(user, safe='')}")
    if r.status_code != 404:
        _check(r, f"look up user {user}", (200,))
        raise ScenarioError(f"invalid-user needs a user id nobody registered, and {user!r} is "
                            "registered (its order would pass validate_user): leave user out "
                            "(a new ghost-... id each time) or pick an unused id")


def _check_short(lab: Any, lines: Sequence[dict[str, Any]]) -> None:
    """out-of-stock fails at reserve_stock only if a line asks for more than is available."""
    have = {}
    for line in lines:
        have[line["sku"]] = available(lab, line["sku"])
        if line["quantity"] > have[line["sku"]]:
            return
    said = ", ".join(f"{sku} has {n:,}" for sku, n in have.items())
    raise ScenarioError(f"out-of-stock needs a line for more than the warehouse has, and it "
                        f"has enough for these lines ({said} available): ask for more, or "
                        f"leave lines out (one unit more than {SCARCE_SKU} has)")


def _balance(lab: Any, account: str) -> int | None:
    """The account's balance in cents; None when it has no account yet."""
    r = lab.http("payment-service").get(f"/api/payments/accounts/{quote(account, safe='')}")
    if r.status_code == 404:
        return None
    return int(_check(r, f"balance of {account}", (200,))["balance"])


def declined_customer(lab: Any, lines: Sequence[Any]) -> str:
    """The customer payment-declined uses for `lines` when no user is given: bob, or a new poor
    customer when bob can pay (for a check that must know whose balance to watch)."""
    return _poor_customer(lab, None, s.order_amount(s.normalise_lines(lines, lab.saga.prices())))


def _poor_customer(lab: Any, user: str | None, total: int) -> str:
    """Who cannot pay `total` cents (after `ensure_customer(..., POOR_BALANCE)`): `user` if
    given (else refused), bob by default, or, when bob has been funded since (money can be
    added but not taken away), a new customer who starts as bob did."""
    if total <= POOR_BALANCE:
        raise ScenarioError(f"payment-declined needs an order that costs more than "
                            f"{POOR_BALANCE:,} cents (what its customer is topped up to); these "
                            f"lines cost {total:,}: order more, or leave lines out")
    customer = user or BOB
    held = _balance(lab, customer) or 0
    if max(held, POOR_BALANCE) < total:
        return customer
    if user is not None:
        raise ScenarioError(
            f"payment-declined needs a customer who cannot pay, and {user!r} can: it holds "
            f"{held:,} cents, the order costs {total:,}. Leave user out (bob, or a new poor "
            f"customer) or order more (lines=[(\"{DECLINED_SKU}\", n)])")
    stand_in = f"{BOB}-{uuid.uuid4().hex[:6]}"
    warnings.warn(f"bob holds {held:,} cents now (funded since) and could pay for this order "
                  f"({total:,}); the scenario's customer is {stand_in}, who starts with "
                  f"{POOR_BALANCE:,} cents as bob did", ScenarioNotice, stacklevel=2)
    return stand_in


def _restart_after_crash(lab: Any, saga_id: str, point: str, timeout: float) -> None:
    """Local mode: wait for the orchestrator to die at the crash point, then start a new one
    (what Kubernetes does by itself for the Deployment, and for the Job via backoffLimit)."""
    if getattr(lab, "mode", "local") != "local":
        return
    step, _, etype = point.rpartition(":")
    client = lab.saga

    def crashed_or_ended() -> Any:
        state = client.state(saga_id)
        crashed = f"{step}:{etype}" in state.seen and not _running(lab, "saga-orchestrator")
        return state if crashed or state.terminal else None

    try:
        state = wait_until(crashed_or_ended, timeout=timeout, interval=0.02,
                           what=f"the orchestrator to crash at {point}")
    except WaitTimeout:
        raise ScenarioError(f"the orchestrator did not reach {point} within {timeout}s; is it "
                            "running? (lab.status())") from None
    if state.terminal:
        return  # some other orchestrator ran it without crashing
    lab.runtime.up(wait=True, progress=False)


def _running(lab: Any, name: str) -> bool:
    for row in lab.runtime.status():
        if row["service"] == name:
            return row["status"] in ("running", "ready")
    return False
