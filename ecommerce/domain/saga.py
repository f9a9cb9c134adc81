"""The order saga as plain data plus pure transition logic: given a saga's events, what next.

A saga is its own stream `saga-<id>`. Every decision is an event appended *before* the
orchestrator acts on it, so the stream alone says where a saga is; `fold` rebuilds that state
and `next_action` says what to do with it. Nothing here does I/O: the orchestrator
(`ecommerce.saga`) reads the stream, asks this module, records the answer, then calls a participant.

Steps run in order; each has a compensation (or none). On a failure, every step that
succeeded, or whose outcome is unknown (it timed out), is compensated in reverse order.

    1. validate_user   user-service       -
    2. create_order    order-service      cancel_order
    3. reserve_stock   inventory-service  release_stock
    4. charge_payment  payment-service    refund_payment
    5. confirm_order   order-service      -  (the pivot)

Failures come in two kinds. A *business refusal* (declined, out of stock, unknown user) is an
answer: it is not retried, and compensation starts. A *transient* failure (timeout, 503,
connection refused) is not: the step is retried with capped exponential backoff until its
deadline, then fails with an unknown outcome. The pivot is never given up on a transient
failure: once the order may be confirmed it cannot be cancelled, so the orchestrator keeps
asking (same idempotency key, same answer) until the order service replies. Compensations are
retried until they succeed; a compensation the participant *refuses* ends the saga as
`SagaFailed` (a human must look).

Ownership: the step or compensation in progress carries its driver's `owner` and a
`lease_until` time, renewed with every recorded attempt. Another orchestrator takes a running
step over only once the lease has expired (the owner died), and records the takeover first.

Stuck: an orchestrator that keeps failing on a saga for a reason that is not a participant's
answer (a bug, a corrupt event) gives up after a bounded number of attempts and records
`SagaStuck` with the error. A stuck saga is not driven by any orchestrator (it is in the
stream, so every one sees it, and after a restart too) until an operator records
`SagaResumed` (`labkit saga retry ID`); then it continues from where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar

from ecommerce.domain import fate, stock
from ecommerce.domain import orders as o
from ecommerce.domain import payments as pay

SAGA_STARTED: Final = "SagaStarted"
STEP_STARTED: Final = "StepStarted"
STEP_RETRIED: Final = "StepRetried"
STEP_SUCCEEDED: Final = "StepSucceeded"
STEP_FAILED: Final = "StepFailed"
COMPENSATION_STARTED: Final = "CompensationStarted"
COMPENSATION_RETRIED: Final = "CompensationRetried"
COMPENSATION_SUCCEEDED: Final = "CompensationSucceeded"
SAGA_COMPLETED: Final = "SagaCompleted"
SAGA_COMPENSATED: Final = "SagaCompensated"
SAGA_FAILED: Final = "SagaFailed"
SAGA_STUCK: Final = "SagaStuck"
SAGA_RESUMED: Final = "SagaResumed"

TERMINAL_EVENTS: Final = (SAGA_COMPLETED, SAGA_COMPENSATED, SAGA_FAILED)
#: Events that stop or restart the driving of a saga without ending it.
STUCK_EVENTS: Final = (SAGA_STUCK, SAGA_RESUMED)
SAGA_EVENTS: Final = (SAGA_STARTED, STEP_STARTED, STEP_RETRIED, STEP_SUCCEEDED, STEP_FAILED,
                      COMPENSATION_STARTED, COMPENSATION_RETRIED, COMPENSATION_SUCCEEDED,
                      *TERMINAL_EVENTS, *STUCK_EVENTS)

STREAM_PREFIX: Final = "saga-"

#: Saga status as folded from its events.
Status = Literal["new", "running", "compensating", "stuck", "completed", "compensated", "failed"]
TERMINAL_STATUSES: Final = ("completed", "compensated", "failed")
Kind = Literal["action", "compensation"]


class SagaRuleError(ValueError):
    """A saga cannot be started as asked (no lines, bad quantity...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stream_id(saga_id: str) -> str:
    return STREAM_PREFIX + saga_id


def saga_id_of(stream: str) -> str:
    return stream[len(STREAM_PREFIX):] if stream.startswith(STREAM_PREFIX) else stream


# --- the definition -----------------------------------------------------------------------

#: What an action or compensation asks of its participant: (method, path, JSON body or None).
RequestSpec = tuple[str, str, "dict[str, Any] | None"]
RequestBuilder = Callable[["SagaState"], RequestSpec]


@dataclass(frozen=True)
class StepDef:
    """One saga step: the one place that says what it asks, how it is undone, what it leaves.

    `request` / `compensation_request` build the HTTP request (docs/api.md) from the saga's
    state; `effects` / `compensation_effects` are the event types the participant records when
    it does them (the checks and the saga log use them to tell a decision from its effect).
    A step read back from a saga's stream (`from_record`) is plain data: its builders come from
    the registry by name (`step_named`).
    """

    name: str
    service: str
    title: str
    compensation: str | None = None
    #: The go/no-go step: never abandoned on a transient failure (see the module docstring).
    pivot: bool = False
    request: RequestBuilder | None = field(default=None, compare=False, repr=False)
    compensation_request: RequestBuilder | None = field(default=None, compare=False, repr=False)
    effects: tuple[str, ...] = ()
    compensation_effects: tuple[str, ...] = ()
    #: A step's own reading of its participant's answer (status, body) -> a refusal or None
    #: (then the usual rules of `classify` apply). Used for the action, not the compensation.
    refuses: Callable[[int, dict[str, Any]], Refused | None] | None = field(
        default=None, compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        """The plain part, as SagaStarted keeps it (the saga's definition travels with it)."""
        return {"name": self.name, "service": self.service, "title": self.title,
                "compensation": self.compensation, "pivot": self.pivot}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> StepDef:
        known = _REGISTRY.get(str(d["name"]))
        if known is not None and known.record() == dict(d):
            return known
        return cls(str(d["name"]), str(d.get("service") or "?"), str(d.get("title") or d["name"]),
                   d.get("compensation") or None, bool(d.get("pivot")))


def _validate_user(saga: SagaState) -> RequestSpec:
    return "GET", f"/api/users/{saga.user_id}", None


def _user_refuses(status: int, body: dict[str, Any]) -> Refused | None:
    """validate_user: an unknown user (404) or one that is not active is a business refusal."""
    if status == 404:
        return Refused("invalid_user", str(body.get("detail") or "user does not exist")[:300],
                       status)
    if 200 <= status < 300 and body.get("status", "active") != "active":
        return Refused("inactive_user", f"user {body.get('id')} is {body.get('status')}", status)
    return None


def _create_order(saga: SagaState) -> RequestSpec:
    return "POST", "/api/orders", {"order_id": saga.order_id, "saga_id": saga.saga_id,
                                   "user_id": saga.user_id,
                                   # No price: order-service prices the lines from
                                   # the catalogue.
                                   "lines": [{"sku": ln["sku"], "quantity": ln["quantity"]}
                                             for ln in saga.lines]}


def _cancel_order(saga: SagaState) -> RequestSpec:
    return "POST", f"/api/orders/{saga.order_id}/cancel", {
        "reason": f"saga {saga.saga_id} compensated: {saga.failure or 'failed'}"}


def _reserve_stock(saga: SagaState) -> RequestSpec:
    return "POST", "/api/inventory/reservations", {
        "order_id": saga.order_id,
        "lines": [{"sku": ln["sku"], "quantity": ln["quantity"]} for ln in saga.lines]}


def _release_stock(saga: SagaState) -> RequestSpec:
    return "POST", f"/api/inventory/reservations/{saga.order_id}/release", {}


def _charge_payment(saga: SagaState) -> RequestSpec:
    return "POST", "/api/payments", {"order_id": saga.order_id, "account_id": saga.user_id,
                                     "amount": saga.amount}


def _refund_payment(saga: SagaState) -> RequestSpec:
    return "POST", f"/api/payments/{saga.order_id}/refund", {}


def _confirm_order(saga: SagaState) -> RequestSpec:
    return "POST", f"/api/orders/{saga.order_id}/confirm", {}


ORDER_SAGA: Final = (
    StepDef("validate_user", "user-service", "validate user", request=_validate_user,
            refuses=_user_refuses),
    StepDef("create_order", "order-service", "create order (PENDING)", "cancel_order",
            request=_create_order, compensation_request=_cancel_order,
            effects=(o.ORDER_PLACED,), compensation_effects=(o.ORDER_CANCELLED,)),
    StepDef("reserve_stock", "inventory-service", "reserve stock", "release_stock",
            request=_reserve_stock, compensation_request=_release_stock,
            effects=(stock.RESERVATION_MADE, stock.RESERVATION_REJECTED, stock.STOCK_RESERVED),
            compensation_effects=(stock.RESERVATION_RELEASED, stock.STOCK_RELEASED,
                                  fate.ORDER_WITHDRAWN)),
    StepDef("charge_payment", "payment-service", "charge payment", "refund_payment",
            request=_charge_payment, compensation_request=_refund_payment,
            effects=(pay.PAYMENT_CHARGED, pay.PAYMENT_DECLINED),
            compensation_effects=(pay.PAYMENT_REFUNDED, pay.PAYMENT_VOIDED, fate.ORDER_WITHDRAWN)),
    StepDef("confirm_order", "order-service", "confirm order", pivot=True,
            request=_confirm_order,
            # confirming also commits the order's reservation (inventory-service follows it)
            effects=(o.ORDER_CONFIRMED, stock.RESERVATION_COMMITTED, stock.STOCK_COMMITTED)),
)
STEP_NAMES: Final = tuple(s.name for s in ORDER_SAGA)
#: The services the saga calls, in the order it first calls them.
PARTICIPANTS: Final = tuple(dict.fromkeys(s.service for s in ORDER_SAGA))
STEPS_BY_NAME: Final = {s.name: s for s in ORDER_SAGA}

# --- the registry: the built-in steps plus steps added by plugins (ecommerce.plugins) ------

_REGISTRY: dict[str, StepDef] = dict(STEPS_BY_NAME)
#: Added steps in the order they were added: (step, the step it goes after).
_ADDED: dict[str, tuple[StepDef, str]] = {}


def register_step(step: StepDef, after: str) -> None:
    """Add `step` to every saga started from now on, right after step `after`.

    The step calls one of the saga's participants (`PARTICIPANTS`) and needs a `request`
    builder (and a `compensation_request` if it has a compensation). Steps cannot go after the
    pivot: once the order is confirmed nothing can be undone. Registering a name again
    replaces the step. Sagas already started keep the steps they started with.
    """
    if step.service not in PARTICIPANTS:
        raise SagaRuleError("bad_step", f"step {step.name!r} calls {step.service!r}; a saga step "
                                        f"calls one of {', '.join(PARTICIPANTS)}")
    if step.request is None:
        raise SagaRuleError("bad_step", f"step {step.name!r} needs request=<function of the saga "
                                        "state returning (method, path, body)>")
    if step.compensation and step.compensation_request is None:
        raise SagaRuleError("bad_step", f"step {step.name!r} has compensation "
                                        f"{step.compensation!r} but no compensation_request")
    if step.name in STEPS_BY_NAME or step.pivot:
        raise SagaRuleError("bad_step", f"{step.name!r}: the built-in steps and the pivot cannot "
                                        "be replaced; give the new step its own name")
    taken = {n for st in _REGISTRY.values() if st.name != step.name
             for n in (st.name, st.compensation) if n}
    if step.name in taken or (step.compensation and step.compensation in taken):
        raise SagaRuleError("bad_step", f"{step.name!r}/{step.compensation!r}: that name is "
                                        "already an action or compensation of the saga")
    _ADDED.pop(step.name, None)
    order = [x.name for x in current_steps()]
    if after not in order or order.index(after) >= order.index(_pivot_name()):
        raise SagaRuleError("bad_step", f"after={after!r}: put the step after one of "
                                        f"{', '.join(order[:order.index(_pivot_name())])} "
                                        "(before the pivot)")
    _REGISTRY[step.name] = step
    _ADDED[step.name] = (step, after)


def unregister_step(name: str) -> bool:
    """Remove an added step (new sagas no longer run it); False if there was none."""
    if name not in _ADDED:
        return False
    del _ADDED[name]
    del _REGISTRY[name]
    return True


def _pivot_name() -> str:
    return next(st.name for st in ORDER_SAGA if st.pivot)


def current_steps() -> tuple[StepDef, ...]:
    """The steps a saga started now runs: the built-in ones with the added ones in place."""
    steps = list(ORDER_SAGA)
    for step, after in _ADDED.values():
        names = [x.name for x in steps]
        steps.insert(names.index(after) + 1 if after in names else len(steps) - 1, step)
    return tuple(steps)


def step_named(name: str) -> StepDef | None:
    """The registered step (with its request builders) called `name`, or None."""
    return _REGISTRY.get(name)


def effects_by_type(steps: Iterable[StepDef] | None = None) -> dict[str, tuple[str, Kind]]:
    """Participant event type -> (step, "action" | "compensation") whose effect it records.

    An event type two steps may leave (`OrderWithdrawn`: the first release or refund) maps to
    the first of them; `effect_of` tells them apart by the service that wrote it."""
    out: dict[str, tuple[str, Kind]] = {}
    for step in steps if steps is not None else current_steps():
        for t in step.effects:
            out.setdefault(t, (step.name, "action"))
        for t in step.compensation_effects:
            out.setdefault(t, (step.name, "compensation"))
    return out


def effect_of(event_type: str, service: str,
              steps: Iterable[StepDef] | None = None) -> tuple[str, Kind] | None:
    """(step, kind) whose effect `event_type`, written by `service`, records; None if none."""
    steps = tuple(steps if steps is not None else current_steps())
    for step in steps:
        if step.service == service and event_type in step.effects:
            return step.name, "action"
        if step.service == service and event_type in step.compensation_effects:
            return step.name, "compensation"
    return effects_by_type(steps).get(event_type)


@dataclass(frozen=True)
class RetryPolicy:
    """Timing of retries. Small defaults, so failure scenarios finish in seconds in class."""

    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    #: A forward step (not the pivot) fails with an unknown outcome after this many seconds.
    step_deadline: float = 5.0
    #: One HTTP request to a participant gives up after this many seconds.
    request_timeout: float = 1.0
    #: Extra time a driver may take past timeout + backoff before others may take over.
    lease_margin: float = 1.0

    @property
    def lease(self) -> float:
        """How long a recorded attempt keeps others away: a live owner renews it in time."""
        return self.request_timeout + self.max_backoff + self.lease_margin

    def backoff(self, attempt: int, jitter: float = 0.0) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): capped exponential.

        `jitter` in [0, 1) takes up to that fraction off the delay, so retries of many sagas
        do not arrive in lockstep.
        """
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 - min(max(jitter, 0.0), 0.99))


# --- requests (what each action asks of its participant) ----------------------------------


@dataclass(frozen=True)
class Request:
    service: str
    method: str
    path: str
    body: dict[str, Any] | None
    idempotency_key: str


def request_for(action: str, saga: SagaState) -> Request:
    """The HTTP request (docs/api.md) an action or compensation sends for this saga."""
    for plain in saga.steps:
        if action in (plain.name, plain.compensation):
            step = step_named(plain.name) or plain
            builder = step.request if action == step.name else step.compensation_request
            if builder is None:
                raise KeyError(f"saga action {action!r} has no request builder in this process "
                               f"(is the plugin that adds step {plain.name!r} loaded?)")
            method, path, body = builder(saga)
            return Request(plain.service, method, path, body, f"{saga.saga_id}:{action}")
    raise KeyError(f"unknown saga action {action!r}")


# --- outcomes of one call -----------------------------------------------------------------


@dataclass(frozen=True)
class Succeeded:
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """A business answer: do not retry. `reason` is machine-readable (declined, ...)."""

    reason: str
    detail: str = ""
    status: int = 0


@dataclass(frozen=True)
class Transient:
    """No answer (timeout, connection refused, 503): retry, the same key is safe."""

    error: str


Outcome = Succeeded | Refused | Transient


def classify(action: str, kind: Kind, status: int, body: Any) -> Outcome:
    """Turn a participant's HTTP answer into an outcome (docs/api.md's status codes)."""
    body_d = body if isinstance(body, dict) else {}
    reason = str(body_d.get("reason") or "")
    detail = str(body_d.get("detail") or "")[:300]
    if status == 408 or status == 429 or status >= 500:
        return Transient(f"HTTP {status} {reason}".strip())
    if kind == "compensation":
        if 200 <= status < 300 or status == 404:
            # 404: the thing to undo never happened (the forward call never landed).
            return Succeeded(_small(body_d) if status != 404 else {"noop": "not_found"})
        return Refused(reason or f"http_{status}", detail, status)
    step = step_named(action)
    refused = step.refuses(status, body_d) if step is not None and step.refuses else None
    if refused is not None:
        return refused
    if 200 <= status < 300:
        return Succeeded(_small(body_d))
    return Refused(reason or f"http_{status}", detail, status)


def _small(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a response worth keeping in the saga's log (no echoed order lines)."""
    return {k: v for k, v in body.items()
            if k != "lines" and isinstance(v, str | int | float | bool | None)}


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """One step's action or compensation, as far as the events tell."""

    status: Literal["pending", "running", "succeeded", "failed"] = "pending"
    attempts: int = 0
    owner: str = ""
    lease_until: float = 0.0
    deadline_at: float = 0.0
    started_at: str | None = None
    ended_at: str | None = None
    error: str = ""
    #: StepFailed only: "refused" (it did not happen) or "deadline" (it may have happened).
    failure_kind: str = ""
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SagaState:
    saga_id: str
    status: Status = "new"
    order_id: str = ""
    user_id: str = ""
    lines: tuple[Mapping[str, Any], ...] = ()
    amount: int = 0
    version: int = 0
    #: The steps this saga runs, as its SagaStarted recorded them (ORDER_SAGA before that).
    steps: tuple[StepDef, ...] = ORDER_SAGA
    actions: tuple[Progress, ...] = tuple(Progress() for _ in ORDER_SAGA)
    compensations: tuple[Progress, ...] = tuple(Progress() for _ in ORDER_SAGA)
    failure: str = ""
    failed_step: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    #: Fault injection recorded in SagaStarted (e.g. {"crash_after": "charge_payment:StepSucceeded"}).
    faults: Mapping[str, Any] = field(default_factory=dict)
    #: "<step>:<event type>" of every event seen: fault hooks fire on the first one only.
    seen: frozenset[str] = frozenset()
    #: While stuck: the error the orchestrator gave up on, and the status to resume in.
    stuck_error: str = ""
    resume_status: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_compensate(self) -> list[int]:
        """Indexes of steps to undo, in the order to undo them (reverse)."""
        out = []
        for i, (step, act) in enumerate(zip(self.steps, self.actions, strict=True)):
            maybe_done = act.status == "succeeded" or (
                act.status == "failed" and act.failure_kind == "deadline")
            if step.compensation and maybe_done:
                out.append(i)
        return out[::-1]


    def index(self, step: str) -> int:
        """The position of step `step` in this saga."""
        for i, st in enumerate(self.steps):
            if st.name == step:
                return i
        raise KeyError(f"saga {self.saga_id} has no step {step!r}")


def _index(state: SagaState, step: str) -> int:
    try:
        return state.index(step)
    except KeyError:
        raise KeyError(f"unknown saga step {step!r}") from None


_D = TypeVar("_D")


def _evolve(obj: _D, **changes: Any) -> _D:
    """`dataclasses.replace` for the plain frozen dataclasses `apply` folds (no `__post_init__`,
    no slots, every field in `__init__`), without its per-call introspection of the fields:
    the orchestrator folds every event it records, and `replace` was most of that."""
    fields = obj.__dict__
    if not changes.keys() <= fields.keys():
        raise TypeError(f"{type(obj).__name__} has no field(s) {sorted(changes.keys() - fields.keys())}")
    new = object.__new__(type(obj))
    new.__dict__.update(fields)
    new.__dict__.update(changes)
    return new


def _set(items: tuple[Progress, ...], i: int, p: Progress) -> tuple[Progress, ...]:
    return (*items[:i], p, *items[i + 1:])


def apply(state: SagaState, etype: str, data: Mapping[str, Any], version: int, at: str) -> SagaState:
    """The state after one event (`at`: its recorded time, ISO-8601)."""
    d = data
    step = d.get("step")
    seen = state.seen | {f"{step}:{etype}"} if step else state.seen | {etype}
    s = _evolve(state, version=version, seen=seen)
    if etype == SAGA_STARTED:
        steps = steps_of(d)
        return _evolve(s, status="running", order_id=d["order_id"], user_id=d["user_id"],
                       lines=tuple(d["lines"]), amount=d["amount"], started_at=at,
                       faults=d.get("faults") or {}, steps=steps,
                       actions=tuple(Progress() for _ in steps),
                       compensations=tuple(Progress() for _ in steps))
    if etype in (STEP_STARTED, STEP_RETRIED, STEP_SUCCEEDED, STEP_FAILED):
        i = _index(s, d["step"])
        p = s.actions[i]
        if d.get("started_at"):
            p = _evolve(p, started_at=d["started_at"])
        if etype == STEP_STARTED:
            p = _evolve(p, status="running", attempts=d.get("attempt", p.attempts + 1),
                        owner=d.get("owner", ""), lease_until=d.get("lease_until", 0.0),
                        deadline_at=d.get("deadline_at", 0.0), started_at=p.started_at or at,
                        error="")
        elif etype == STEP_RETRIED:
            p = _evolve(p, attempts=d.get("attempt", p.attempts), owner=d.get("owner", p.owner),
                        error=d.get("error", ""), lease_until=d.get("lease_until", p.lease_until))
        elif etype == STEP_SUCCEEDED:
            p = _evolve(p, status="succeeded", ended_at=at, result=d.get("result") or {},
                        lease_until=0.0, error="", attempts=d.get("attempt", p.attempts))
        else:
            p = _evolve(p, status="failed", ended_at=at, error=d.get("reason", ""),
                        attempts=d.get("attempt", p.attempts),
                        failure_kind=d.get("kind", "refused"), lease_until=0.0)
            s = _evolve(s, status="compensating", failure=d.get("reason", ""), failed_step=d["step"])
        return _evolve(s, actions=_set(s.actions, i, p))
    if etype in (COMPENSATION_STARTED, COMPENSATION_RETRIED, COMPENSATION_SUCCEEDED):
        i = _index(s, d["step"])
        p = s.compensations[i]
        if d.get("started_at"):
            p = _evolve(p, started_at=d["started_at"])
        if etype == COMPENSATION_STARTED:
            p = _evolve(p, status="running", attempts=d.get("attempt", p.attempts + 1),
                        owner=d.get("owner", ""), lease_until=d.get("lease_until", 0.0),
                        started_at=p.started_at or at, error="")
        elif etype == COMPENSATION_RETRIED:
            p = _evolve(p, attempts=d.get("attempt", p.attempts), owner=d.get("owner", p.owner),
                        error=d.get("error", ""), lease_until=d.get("lease_until", p.lease_until))
        else:
            p = _evolve(p, status="succeeded", ended_at=at, result=d.get("result") or {},
                        lease_until=0.0, error="", attempts=d.get("attempt", p.attempts))
        return _evolve(s, compensations=_set(s.compensations, i, p))
    if etype == SAGA_STUCK:
        if s.terminal or s.status == "stuck":
            return s
        return _evolve(s, status="stuck", stuck_error=d.get("error", ""), resume_status=s.status)
    if etype == SAGA_RESUMED:
        if s.status != "stuck":
            return s
        return _evolve(s, status=s.resume_status or d.get("status") or "running",
                       stuck_error="", resume_status="")
    if etype == SAGA_COMPLETED:
        return _evolve(s, status="completed", ended_at=at)
    if etype == SAGA_COMPENSATED:
        return _evolve(s, status="compensated", ended_at=at)
    if etype == SAGA_FAILED:
        if d.get("step"):
            i = _index(s, d["step"])
            p = s.compensations[i]
            p = _evolve(p, status="failed", ended_at=at, error=d.get("reason", ""),
                        lease_until=0.0, started_at=d.get("step_started_at") or p.started_at,
                        attempts=d.get("attempt", p.attempts))
            s = _evolve(s, compensations=_set(s.compensations, i, p))
        return _evolve(s, status="failed", ended_at=at, failure=d.get("reason", s.failure),
                       failed_step=d.get("step", s.failed_step))
    return s


class EventLike(Protocol):
    """What `fold` needs of an event: `RecordedEvent` fits."""

    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def version(self) -> int: ...
    @property
    def recorded_iso(self) -> str: ...


def fold(saga_id: str, events: Iterable[EventLike]) -> SagaState:
    """Rebuild a saga's state from its stream's events (RecordedEvent or alike)."""
    state = SagaState(saga_id)
    for e in events:
        state = apply(state, e.type, e.data, e.version, e.recorded_iso)
    return state


# --- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSagaEvent:
    """An event the orchestrator must record: type + data (it adds ids and appends)."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Invoke:
    """Record `record` (may be empty: already recorded by me), then call the participant."""

    step: StepDef
    kind: Kind
    attempt: int
    record: tuple[NewSagaEvent, ...] = ()

    @property
    def action(self) -> str:
        return self.step.name if self.kind == "action" else str(self.step.compensation)


@dataclass(frozen=True)
class Finish:
    """Record the terminal event."""

    record: tuple[NewSagaEvent, ...]


@dataclass(frozen=True)
class Wait:
    """Another live orchestrator holds this saga's lease until `until` (epoch seconds)."""

    until: float
    owner: str


@dataclass(frozen=True)
class Done:
    status: str


@dataclass(frozen=True)
class NotStarted:
    """The stream has no SagaStarted: nothing to do."""


@dataclass(frozen=True)
class Stuck:
    """An orchestrator gave up on this saga (`error`): nothing to do until an operator resumes it."""

    error: str


Action = Invoke | Finish | Wait | Done | NotStarted | Stuck


def next_action(state: SagaState, now: float, owner: str, policy: RetryPolicy) -> Action:
    """What to do next with this saga, as orchestrator `owner` at time `now` (epoch seconds)."""
    if state.status == "new":
        return NotStarted()
    if state.terminal:
        return Done(state.status)
    if state.status == "stuck":
        return Stuck(state.stuck_error)
    if state.status == "running":
        for i, step in enumerate(state.steps):
            p = state.actions[i]
            if p.status == "succeeded":
                continue
            if p.status == "pending":
                return Invoke(step, "action", 1, (_step_started(step, 1, owner, now, policy),))
            # running
            if p.owner == owner:
                return Invoke(step, "action", p.attempts + 1)
            if p.lease_until > now:
                return Wait(p.lease_until, p.owner)
            started = _step_started(step, p.attempts + 1, owner, now, policy,
                                    p.started_at or "")
            return Invoke(step, "action", p.attempts + 1, (started,))
        return Finish((NewSagaEvent(SAGA_COMPLETED, {"order_id": state.order_id,
                                                     "started_at": state.started_at}),))
    # compensating
    for i in state.to_compensate():
        step = state.steps[i]
        p = state.compensations[i]
        if p.status == "succeeded":
            continue
        if p.status == "pending":
            return Invoke(step, "compensation", 1,
                          (_comp_started(step, 1, owner, now, policy),))
        if p.owner == owner:
            return Invoke(step, "compensation", p.attempts + 1)
        if p.lease_until > now:
            return Wait(p.lease_until, p.owner)
        return Invoke(step, "compensation", p.attempts + 1,
                      (_comp_started(step, p.attempts + 1, owner, now, policy,
                                    p.started_at or ""),))
    return Finish((NewSagaEvent(SAGA_COMPENSATED, {
        "order_id": state.order_id, "reason": state.failure, "failed_step": state.failed_step,
        "started_at": state.started_at,
        "compensated": [state.steps[i].compensation for i in state.to_compensate()],
    }),))


def _step_started(step: StepDef, attempt: int, owner: str, now: float, policy: RetryPolicy,
                  takeover_of: str | None = None) -> NewSagaEvent:
    """StepStarted; `takeover_of` (when the step first started) marks a takeover."""
    data: dict[str, Any] = {"step": step.name, "service": step.service, "attempt": attempt,
                            "owner": owner, "lease_until": round(now + policy.lease, 3),
                            "deadline_at": round(now + policy.step_deadline, 3)}
    if takeover_of is not None:
        data["takeover"] = True
        data["started_at"] = takeover_of
    return NewSagaEvent(STEP_STARTED, data)


def _comp_started(step: StepDef, attempt: int, owner: str, now: float, policy: RetryPolicy,
                  takeover_of: str | None = None) -> NewSagaEvent:
    data: dict[str, Any] = {"step": step.name, "compensation": step.compensation,
                            "service": step.service, "attempt": attempt, "owner": owner,
                            "lease_until": round(now + policy.lease, 3)}
    if takeover_of is not None:
        data["takeover"] = True
        data["started_at"] = takeover_of
    return NewSagaEvent(COMPENSATION_STARTED, data)


def on_outcome(
    state: SagaState, invoke: Invoke, outcome: Outcome, now: float, owner: str,
    policy: RetryPolicy, jitter: float = 0.0,
) -> tuple[NewSagaEvent, ...]:
    """The events that record one call's outcome (a retry, a success, a failure)."""
    step, attempt = invoke.step, invoke.attempt
    i = _index(state, step.name)
    progress = state.actions[i] if invoke.kind == "action" else state.compensations[i]
    # Outcome events repeat when their step started, so each one describes the step in full
    # (the saga projection turns one event into one complete step record).
    base: dict[str, Any] = {"step": step.name, "attempt": attempt,
                            "started_at": progress.started_at}
    if invoke.kind == "action":
        if isinstance(outcome, Succeeded):
            return (NewSagaEvent(STEP_SUCCEEDED, {**base, "result": outcome.result}),)
        if isinstance(outcome, Refused):
            return (NewSagaEvent(STEP_FAILED, {**base, "kind": "refused", "reason": outcome.reason,
                                               "detail": outcome.detail, "status": outcome.status}),)
        delay = policy.backoff(attempt, jitter)
        deadline = progress.deadline_at
        if step.pivot or now + delay < deadline:
            return (NewSagaEvent(STEP_RETRIED, {
                **base, "error": outcome.error, "retry_in": round(delay, 4), "owner": owner,
                "lease_until": round(now + delay + policy.lease, 3)}),)
        return (NewSagaEvent(STEP_FAILED, {**base, "kind": "deadline", "reason": "deadline_exceeded",
                                           "detail": f"last error: {outcome.error}"}),)
    base["compensation"] = step.compensation
    if isinstance(outcome, Succeeded):
        return (NewSagaEvent(COMPENSATION_SUCCEEDED, {**base, "result": outcome.result}),)
    if isinstance(outcome, Refused):
        return (NewSagaEvent(SAGA_FAILED, {
            "order_id": state.order_id, "step": step.name, "compensation": step.compensation,
            "reason": f"compensation_refused:{outcome.reason}", "detail": outcome.detail,
            "saga_failure": state.failure, "started_at": state.started_at,
            "attempt": attempt, "step_started_at": progress.started_at}),)
    delay = policy.backoff(attempt, jitter)
    return (NewSagaEvent(COMPENSATION_RETRIED, {
        **base, "error": outcome.error, "retry_in": round(delay, 4), "owner": owner,
        "lease_until": round(now + delay + policy.lease, 3)}),)


def retry_delay(events: Sequence[NewSagaEvent]) -> float:
    """How long to sleep after recording these events (a retry's backoff), else 0."""
    for e in events:
        if e.type in (STEP_RETRIED, COMPENSATION_RETRIED):
            return float(e.data.get("retry_in", 0.0))
    return 0.0


# --- stuck and resumed ------------------------------------------------------------------


def in_progress(state: SagaState) -> tuple[str, Kind] | None:
    """The action or compensation the saga is at: (its name, its kind), or None."""
    if state.status == "running":
        for step, p in zip(state.steps, state.actions, strict=True):
            if p.status != "succeeded":
                return step.name, "action"
    if state.status == "compensating":
        for i in state.to_compensate():
            if state.compensations[i].status != "succeeded":
                return str(state.steps[i].compensation), "compensation"
    return None


def saga_stuck(state: SagaState, error: str, attempts: int, owner: str) -> NewSagaEvent:
    """`SagaStuck`: the orchestrator gave up after `attempts` failed attempts with `error`."""
    where = in_progress(state)
    return NewSagaEvent(SAGA_STUCK, {
        "order_id": state.order_id, "error": error[:1000], "attempts": attempts,
        "status": state.status, "at_step": where[0] if where else None,
        "kind": where[1] if where else None, "owner": owner})


def saga_resumed(state: SagaState, by: str) -> NewSagaEvent:
    """`SagaResumed`: an operator asks the orchestrators to drive a stuck saga again."""
    if state.status != "stuck":
        raise SagaRuleError("not_stuck", f"saga {state.saga_id} is {state.status}, not stuck: "
                                         "only a stuck saga can be retried")
    return NewSagaEvent(SAGA_RESUMED, {"order_id": state.order_id, "status": state.resume_status,
                                       "error": state.stuck_error, "by": by})


# --- starting a saga ----------------------------------------------------------------------


def normalise_lines(lines: Sequence[Any], prices: Mapping[str, int] | None = None
                    ) -> list[dict[str, Any]]:
    """Order lines as `[{"sku", "quantity", "price"}]`; accepts `(sku, qty)` pairs too.

    Prices are integer cents (1999 is 19.99), like everywhere in the lab. With `prices` (the
    catalogue) every line costs the catalogue's price: a line naming another price, or a SKU
    the catalogue does not have (`unknown_sku`, whatever its price), is refused.
    """
    if not lines:
        raise SagaRuleError("no_lines", "an order needs at least one line")
    if len(lines) > o.MAX_LINES:
        raise SagaRuleError("bad_line", f"an order has at most {o.MAX_LINES} lines")
    out = []
    for line in lines:
        if isinstance(line, Mapping):
            sku, qty, price = line.get("sku"), line.get("quantity", 1), line.get("price")
        elif isinstance(line, list | tuple) and len(line) in (2, 3):
            sku, qty = line[0], line[1]
            price = line[2] if len(line) == 3 else None
        else:
            raise SagaRuleError("bad_line", f"an order line is {{sku, quantity, price}}; got {line!r}")
        if not isinstance(sku, str) or not sku:
            raise SagaRuleError("bad_line", f"line sku must be a non-empty string; got {sku!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= o.MAX_QUANTITY:
            raise SagaRuleError("bad_line", f"line quantity must be an int from 1 to "
                                            f"{o.MAX_QUANTITY:,}; got {qty!r}")
        if prices is not None:
            price = _catalogue_price(sku, price, prices)
        if price is None:  # no catalogue: the caller prices each line
            raise SagaRuleError("bad_line", f"no price for {sku!r}: give one (integer cents)")
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise SagaRuleError("bad_line", f"line price is integer cents >= 0; got {price!r}")
        out.append({"sku": sku, "quantity": qty, "price": price})
    skus = [ln["sku"] for ln in out]
    if len(set(skus)) != len(skus):
        raise SagaRuleError("bad_line", "each sku may appear on one line only")
    return out


def _catalogue_price(sku: str, price: Any, prices: Mapping[str, int]) -> int:
    """The catalogue's price of `sku`: an unknown SKU is refused whatever price the line names,
    and a client's own price is refused, not charged."""
    if sku not in prices:
        raise SagaRuleError("unknown_sku", stock.not_in_catalogue(sku, prices))
    if price is not None and price != prices[sku]:
        raise SagaRuleError("price_mismatch",
                            f"{sku} costs {prices[sku]} cents (the catalogue's price); "
                            f"leave the price out instead of sending {price!r}")
    return prices[sku]


def order_amount(lines: Sequence[Mapping[str, Any]]) -> int:
    """What the order costs in cents: sum of quantity x price."""
    return sum(int(ln["quantity"]) * int(ln["price"]) for ln in lines)


def saga_started(saga_id: str, order_id: str, user_id: str, lines: Sequence[Mapping[str, Any]],
                 faults: Mapping[str, Any] | None = None,
                 steps: Sequence[StepDef] | None = None) -> NewSagaEvent:
    """The first event of a saga: what it is about. `faults` are test hooks (crash_after).

    `steps` default to `current_steps()`. When they are not the built-in ones, the event keeps
    their definitions too (`step_defs`), so the stream alone says what the saga runs.
    """
    if not isinstance(user_id, str) or not user_id:
        raise SagaRuleError("bad_user", "user id must be a non-empty string")
    clean = normalise_lines(lines)
    chosen = tuple(steps) if steps is not None else current_steps()
    data: dict[str, Any] = {"saga_id": saga_id, "order_id": order_id, "user_id": user_id,
                            "lines": clean, "amount": order_amount(clean), "saga": "order",
                            "steps": [x.name for x in chosen]}
    if chosen != ORDER_SAGA:
        data["step_defs"] = [x.record() for x in chosen]
    if faults:
        data["faults"] = dict(faults)
    return NewSagaEvent(SAGA_STARTED, data)


def steps_of(started: Mapping[str, Any]) -> tuple[StepDef, ...]:
    """The steps a saga runs, from its SagaStarted data."""
    if started.get("step_defs"):
        return tuple(StepDef.from_record(d) for d in started["step_defs"])
    names = started.get("steps")
    if not names or list(names) == list(STEP_NAMES):
        return ORDER_SAGA
    return tuple(STEPS_BY_NAME.get(n) or StepDef(str(n), "?", str(n)) for n in names)


def crash_point(spec: str, events: Sequence[NewSagaEvent], before: SagaState) -> int | None:
    """The index in `events` at which recording them first reaches crash point `spec`, or None.

    `spec` is "<step>:<event type>", "<step number>:<event type>" (1-based), a compensation's
    name ("refund_payment:CompensationSucceeded") or a bare saga-level type ("SagaCompleted").
    Fires once: a resumed orchestrator never re-records a first event.
    """
    if not spec:
        return None
    where, _, etype = spec.rpartition(":")
    names = [x.name for x in before.steps]
    if where.isdigit():
        n = int(where)
        where = names[n - 1] if 1 <= n <= len(names) else where
    where = {x.compensation: x.name for x in before.steps if x.compensation}.get(where, where)
    for i, e in enumerate(events):
        if e.type != etype:
            continue
        step = e.data.get("step")
        mark = f"{step}:{etype}" if step else etype
        if (not where or step == where) and mark not in before.seen:
            return i
    return None


def crash_point_matches(spec: str, events: Sequence[NewSagaEvent], before: SagaState) -> bool:
    """Whether recording `events` reaches the crash point `spec` for the first time."""
    return crash_point(spec, events, before) is not None
