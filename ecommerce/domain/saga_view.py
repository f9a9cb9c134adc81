"""How a saga looks to a reader: its status view and its timeline, both pure functions.

`describe(state)` is what `lab.saga.status(id)` returns (folded straight from the stream); the
saga projection (`ecommerce.projections.sagas`) builds the same document event by event, so the
query service (`/api/queries/sagas/{id}`) and the Python API agree field for field.
`timeline_rows(saga_id, events)` gives one row per attempt of every action and compensation:
what the Gantt chart draws.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ecommerce.domain import saga as s


def duration_ms(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds() * 1000, 2)


def progress_doc(kind: str, step: s.StepDef, status: str, attempts: int, started_at: str | None,
                 ended_at: str | None, error: str) -> dict[str, Any]:
    """One action's or compensation's record in a saga view."""
    return {"kind": kind, "step": step.name, "service": step.service, "status": status,
            "attempts": attempts, "started_at": started_at, "ended_at": ended_at,
            "duration_ms": duration_ms(started_at, ended_at), "error": error}


def empty_view(saga_id: str, data: Mapping[str, Any], at: str, version: int,
               steps: tuple[s.StepDef, ...] | None = None) -> dict[str, Any]:
    """The view right after SagaStarted: every action and compensation pending.

    `steps` default to the ones SagaStarted's `data` records (`ecommerce.domain.saga.steps_of`).
    """
    steps = steps if steps is not None else s.steps_of(data)
    doc: dict[str, Any] = {
        "saga_id": saga_id, "order_id": data["order_id"], "user_id": data["user_id"],
        "status": "running", "amount": data["amount"], "lines": list(data["lines"]),
        "failure": "", "failed_step": "", "stuck_error": "", "started_at": at, "ended_at": None,
        "duration_ms": None, "version": version,
        "actions": [st.name for st in steps],
        "compensations": [st.compensation for st in reversed(steps) if st.compensation],
    }
    for step in steps:
        doc[step.name] = progress_doc("action", step, "pending", 0, None, None, "")
        if step.compensation:
            doc[step.compensation] = progress_doc("compensation", step, "pending", 0, None, None, "")
    return doc


def describe(state: s.SagaState) -> dict[str, Any]:
    """The saga's view, folded from its stream: what `lab.saga.status(id)` returns.

    Equal, field for field, to the saga projection's document (`/api/queries/sagas/{id}`):
    the saga's fields, then one record per action (`validate_user`, ...) and per compensation
    (`refund_payment`, ...), each with status, attempts, start, end, duration and last error.
    `actions` and `compensations` list those names in the order they run.
    """
    if state.status == "new":
        return {"saga_id": state.saga_id, "status": "new"}
    doc = empty_view(state.saga_id, {"order_id": state.order_id, "user_id": state.user_id,
                                     "amount": state.amount, "lines": [dict(x) for x in state.lines]},
                     state.started_at or "", state.version, state.steps)
    doc.update(status=state.status, failure=state.failure, failed_step=state.failed_step,
               stuck_error=state.stuck_error, ended_at=state.ended_at,
               duration_ms=duration_ms(state.started_at, state.ended_at))
    for step, act, comp in zip(state.steps, state.actions, state.compensations, strict=True):
        doc[step.name] = progress_doc("action", step, act.status, act.attempts, act.started_at,
                                      act.ended_at, act.error)
        if step.compensation:
            doc[step.compensation] = progress_doc("compensation", step, comp.status, comp.attempts,
                                                  comp.started_at, comp.ended_at, comp.error)
    return doc


def summary(view: Mapping[str, Any]) -> dict[str, Any]:
    """The few fields a listing shows."""
    return {k: view.get(k) for k in ("saga_id", "order_id", "user_id", "status", "amount",
                                      "failure", "failed_step", "stuck_error", "started_at",
                                      "ended_at", "duration_ms")}


# --- timeline ----------------------------------------------------------------------------

TIMELINE_COLUMNS = ("saga", "step", "kind", "start", "end", "outcome", "attempt")

_OPENERS = {s.STEP_STARTED: "action", s.COMPENSATION_STARTED: "compensation"}
_RETRIES = {s.STEP_RETRIED: "action", s.COMPENSATION_RETRIED: "compensation"}
_CLOSERS = {s.STEP_SUCCEEDED: ("action", "succeeded"), s.STEP_FAILED: ("action", "failed"),
            s.COMPENSATION_SUCCEEDED: ("compensation", "succeeded")}


def timeline_rows(saga_id: str, events: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per attempt: saga, step, kind, start, end, outcome, attempt.

    outcome: `succeeded`, `failed` (refused, or deadline passed), `retried` (transient error,
    tried again after a backoff), `interrupted` (the orchestrator died during the attempt; a
    new one took over), `running` (no outcome yet: end is None). An attempt after a retry
    starts when its backoff ends.
    """
    rows: list[dict[str, Any]] = []
    open_: dict[tuple[str, str], dict[str, Any]] = {}

    def close(key: tuple[str, str], end: datetime, outcome: str) -> None:
        row = open_.pop(key, None)
        if row is not None:
            row["end"], row["outcome"] = max(end, row["start"]), outcome
            rows.append(row)

    for e in events:
        t, d = e.type, e.data
        at = e.recorded_at
        step = d.get("step")
        if t in _OPENERS:
            key = (step, _OPENERS[t])
            close(key, at, "interrupted")
            open_[key] = {"saga": saga_id, "step": step, "kind": _OPENERS[t], "start": at,
                          "end": None, "outcome": "running", "attempt": d.get("attempt", 1)}
        elif t in _RETRIES:
            key = (step, _RETRIES[t])
            close(key, at, "retried")
            start = at + timedelta(seconds=float(d.get("retry_in", 0.0)))
            open_[key] = {"saga": saga_id, "step": step, "kind": _RETRIES[t], "start": start,
                          "end": None, "outcome": "running", "attempt": d.get("attempt", 1) + 1}
        elif t in _CLOSERS:
            kind, outcome = _CLOSERS[t]
            close((step, kind), at, outcome)
        elif t == s.SAGA_FAILED and step:
            close((step, "compensation"), at, "failed")
    rows.extend(open_.values())
    rows.sort(key=lambda r: r["start"])
    return rows

def format_view(view: dict[str, Any]) -> str:
    """A saga view as a few human lines (the CLI's `status`)."""
    out = [f"saga {view['saga_id']}  order {view.get('order_id')}  user {view.get('user_id')}  "
           f"amount {view.get('amount')}  -> {str(view.get('status')).upper()}"
           + (f"  ({view['failure']} at {view['failed_step']})" if view.get("failure") else "")]
    if view.get("stuck_error"):
        out.append(f"  stuck: {view['stuck_error']}  (fix the cause, then "
                   f"`labkit saga retry {view['saga_id']}`)")
    for name in [*view.get("actions", []), *view.get("compensations", [])]:
        p = view[name]
        if p["status"] == "pending":
            continue
        ms = f"{p['duration_ms']:.1f} ms" if p.get("duration_ms") is not None else "..."
        err = f"  last error: {p['error']}" if p.get("error") else ""
        out.append(f"  {p['kind']:<12} {name:<15} {p['status']:<10} attempts {p['attempts']}"
                   f"  {ms}{err}")
    if view.get("duration_ms") is not None:
        out.append(f"  total {view['duration_ms']:.1f} ms")
    return "\n".join(out)
