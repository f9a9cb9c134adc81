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
  -> compensated: release stock, cancel order.
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
from collections.abc import Sequence
from typing import Any

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
    retried = [st.name for st, act in zip(s.ORDER_SAGA, state.actions, strict=True)
               if act.attempts > 1]
    if state.status == "completed":
        return _FLAKY.get(retried[0], "retried") if retried else "happy"
    return state.status


class ScenarioError(RuntimeError):
    """A scenario could not be set up; the message says what is missing."""


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
    held = int(_check(lab.http("payment-service").get(f"/api/payments/accounts/{user_id}"),
                      f"balance of {user_id}", (200,))["balance"])
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
         lines: Sequence[Any] | None = None, step: int | str = 3, wait: bool = False,
         timeout: float = 60.0) -> str:
    """Start one scenario's saga; return its id (with `wait=True`, once it has ended).

    `user` / `lines` override the customer and the order; `step` is where `orchestrator-crash`
    kills the orchestrator (a step number 1-5 or name; the crash comes right after that step's
    StepSucceeded is recorded).
    """
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    _check_options(user, lines, timeout)
    crash_step = _step_name(step)
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
    order = list(lines or DEFAULT_LINES)
    customer = user or ALICE
    crash_after = None
    if scenario == "invalid-user":
        customer = user or f"ghost-{uuid.uuid4().hex[:8]}"
    elif scenario == "payment-declined":
        customer = user or BOB
        ensure_customer(lab, customer, POOR_BALANCE)
        order = list(lines or [("MONITOR-27", 1)])
    else:
        ensure_customer(lab, customer)
    if scenario == "out-of-stock":
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
