"""The saga view (`/api/queries/sagas`, `/api/queries/sagas/{id}`) and saga counts.

One document per saga, keyed by saga id, in the shape of `ecommerce.domain.saga_view.describe`:
the saga's status, failure and duration, plus one record per action and per compensation.
Every saga event carries what its record needs (outcome events repeat when their step
started), so each event becomes one `Merge` of whole records: no read-before-write.
"""

from __future__ import annotations

from typing import Any

from ecommerce.domain import saga as s
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Incr, Merge, Put, Write
from ecommerce.domain.saga_view import duration_ms, empty_view, progress_doc
from ecommerce.projections.base import Projection

SAGAS = "sagas"
SAGA_STATS = "saga_stats"
STATS_KEY = "summary"

_STEP_STATUS = {s.STEP_STARTED: "running", s.STEP_RETRIED: "running",
                s.STEP_SUCCEEDED: "succeeded", s.STEP_FAILED: "failed",
                s.COMPENSATION_STARTED: "running", s.COMPENSATION_RETRIED: "running",
                s.COMPENSATION_SUCCEEDED: "succeeded"}
_TERMINAL_STATUS = {s.SAGA_COMPLETED: "completed", s.SAGA_COMPENSATED: "compensated",
                    s.SAGA_FAILED: "failed"}


def _step(d: dict[str, Any]) -> s.StepDef:
    """The step an event is about; a step this process does not know (added by a plugin that
    is not loaded here) still gets its record, with what the event says."""
    name = d["step"]
    known = s.step_named(name)
    if known is not None:
        return known
    return s.StepDef(name, d.get("service") or "?", name, d.get("compensation"))


def _record(e: RecordedEvent, kind: str, step: s.StepDef) -> dict[str, Any]:
    d, t = e.data, e.type
    status = _STEP_STATUS[t]
    started = d.get("started_at") or e.recorded_iso
    ended = e.recorded_iso if status in ("succeeded", "failed") else None
    if t in (s.STEP_RETRIED, s.COMPENSATION_RETRIED):
        error = d.get("error", "")
    elif t == s.STEP_FAILED:
        error = d.get("reason", "")
    else:
        error = ""
    return progress_doc(kind, step, status, d.get("attempt", 1), started, ended, error)


def project_sagas(e: RecordedEvent) -> list[Write]:
    t = e.type
    saga_id = s.saga_id_of(e.stream_id)
    if t == s.SAGA_STARTED:
        return [Put(SAGAS, saga_id, empty_view(saga_id, e.data, e.recorded_iso, e.version),
                    e.position)]
    d = e.data
    fields: dict[str, Any] = {"version": e.version}
    if t in _STEP_STATUS:
        step = _step(d)
        if t.startswith("Compensation"):
            fields[str(step.compensation)] = _record(e, "compensation", step)
        else:
            fields[step.name] = _record(e, "action", step)
        if t == s.STEP_FAILED:
            fields.update(status="compensating", failure=d.get("reason", ""),
                          failed_step=step.name)
    elif t == s.SAGA_STUCK:
        fields.update(status="stuck", stuck_error=d.get("error", ""))
    elif t == s.SAGA_RESUMED:
        fields.update(status=d.get("status") or "running", stuck_error="")
    elif t in _TERMINAL_STATUS:
        started = d.get("started_at")
        fields.update(status=_TERMINAL_STATUS[t], ended_at=e.recorded_iso,
                      duration_ms=duration_ms(started, e.recorded_iso))
        if t == s.SAGA_FAILED:
            fields.update(failure=d.get("reason", ""), failed_step=d.get("step", ""))
            if d.get("step"):
                step = _step(d)
                fields[str(step.compensation)] = progress_doc(
                    "compensation", step, "failed", d.get("attempt", 1),
                    d.get("step_started_at") or e.recorded_iso, e.recorded_iso, d.get("reason", ""))
    return [Merge(SAGAS, saga_id, fields, e.position)]


def _stats_started(e: RecordedEvent) -> list[Write]:
    return [Incr(SAGA_STATS, STATS_KEY, {"started": 1, "running": 1})]


def _stats_stuck(e: RecordedEvent) -> list[Write]:
    return [Incr(SAGA_STATS, STATS_KEY, {"stuck": 1 if e.type == s.SAGA_STUCK else -1})]


def _stats_ended(e: RecordedEvent) -> list[Write]:
    return [Incr(SAGA_STATS, STATS_KEY, {"running": -1, _TERMINAL_STATUS[e.type]: 1})]


SAGAS_VIEW = Projection(
    "sagas", (SAGAS,), dict.fromkeys(s.SAGA_EVENTS, project_sagas),
    "one document per saga: status, failure, every action and compensation with its timing",
)
SAGA_STATS_VIEW = Projection(
    "saga-stats", (SAGA_STATS,),
    {s.SAGA_STARTED: _stats_started, **dict.fromkeys(s.STUCK_EVENTS, _stats_stuck),
     **dict.fromkeys(s.TERMINAL_EVENTS, _stats_ended)},
    "sagas started, running (of which stuck), completed, compensated, failed",
)
project_saga_stats = SAGA_STATS_VIEW.project
