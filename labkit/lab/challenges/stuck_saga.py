"""`stuck-saga`: a saga that never ends, because its pivot step has no deadline.

Every forward step of the order saga has a deadline, except the pivot (`confirm_order`): once
the money is charged and the stock reserved, the order may already be confirmed, so the
orchestrator must not give up on it; it keeps asking, with the same Idempotency-Key, until
order-service answers. If order-service is down, the saga stays `running`, attempt after
attempt, and nothing pages anyone. This challenge makes order-service die (an injected crash
fault on that one order's confirm call, as a bug would) right when the saga confirms.

Fix: find which step, which service and why (saga list, timeline, status, logs), and bring
order-service back (`labkit up` starts what is down; in a cluster the Deployment would). The
orchestrator's next attempt then confirms the order; nothing was charged twice. Check: the
saga completed, order-service shows the order CONFIRMED, and a new order goes through.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from ecommerce.domain import saga as s
from labkit.lab.challenges.base import (
    Challenge,
    ChallengeError,
    CheckResult,
    require_local,
    wait_for,
)
from labkit.lab.scenarios import ALICE, DEFAULT_LINES, ensure_customer

PIVOT = s.STEP_NAMES.index("confirm_order")


def _down(lab: Any, name: str) -> bool:
    return any(r["service"] == name and r["status"] in ("stopped", "not started")
               for r in lab.runtime.status())


class StuckSaga(Challenge):
    name = "stuck-saga"
    title = "An order stays 'processing' forever"
    topic = "02-saga"
    story = (
        "Customer alice placed order {order_id} (saga {saga_id}) a while ago. Her money was "
        "taken, but the order page still says 'processing', and it never changes. Nobody got "
        "an alert. Find where this order is stuck and why, and get it finished (the customer "
        "wants the order, so cancelling it is not the fix)."
    )
    hints = (
        "`labkit saga list` (lab.saga.summaries()): which saga has not ended? Then "
        "`labkit saga timeline {saga_id}` (lab.saga.timeline('{saga_id}')): which step is it on, "
        "and how many attempts so far?",
        "That step is the pivot (confirm_order): the only step without a deadline, because an "
        "order that may be confirmed must not be cancelled. So the orchestrator asks again and "
        "again. Who should answer it? `labkit status`.",
        "order-service is not running. `labkit logs order-service` shows its last lines: it "
        "died while handling the confirm call of this very order.",
        "Start what is down: `labkit up` (or lab.up()). The orchestrator's next attempt, with "
        "the same Idempotency-Key, confirms the order; watch the saga end with "
        "lab.saga.wait('{saga_id}').",
    )
    tools = ("labkit saga list", "labkit saga timeline", "labkit status", "labkit logs")
    needs_faults = True  # order-service's death is an injected crash on one order's confirm

    def start(self, lab: Any) -> dict[str, Any]:
        require_local(lab, self)
        ensure_customer(lab, ALICE)
        sid = uuid.uuid4().hex[:12]
        oid = f"ord-{sid}"
        lab.faults.inject("order-service", "crash", times=1, path=f"/api/orders/{oid}/confirm")
        lab.saga.place_order(ALICE, list(DEFAULT_LINES), saga_id=sid)
        wait_for(lambda: _down(lab, "order-service"), timeout=30,
                 what="order-service dying at the pivot")
        # A couple of unanswered attempts, so the timeline already shows the symptom.
        wait_for(lambda: lab.saga.state(sid).actions[PIVOT].attempts >= 2, timeout=30,
                 what="the orchestrator retrying the pivot")
        lab.close()
        return {"saga_id": sid, "order_id": oid}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        sid, oid = context["saga_id"], context["order_id"]
        try:
            state = lab.saga.state(sid)
        except Exception as exc:
            return CheckResult(False, f"cannot read saga {sid}: {exc}")
        if not state.terminal and not _down(lab, "order-service"):
            # order-service is back: the orchestrator's next retry (its backoff is capped at
            # 30 s) confirms the order. Wait for that retry rather than judge before it came.
            with contextlib.suppress(ChallengeError):
                state = wait_for(lambda: (st := lab.saga.state(sid)).terminal and st,
                                 timeout=45, what=f"saga {sid} to end")
        if state.status != "completed":
            step = state.actions[PIVOT]
            return CheckResult(False, f"saga {sid} is {state.status} (confirm_order: "
                                      f"{step.status}, {step.attempts} attempts)",
                               "the saga completed, its order confirmed")
        try:
            r = lab.http("order-service").get(f"/api/orders/{oid}")
            order = r.json() if r.status_code == 200 else {"status": f"HTTP {r.status_code}"}
        except Exception as exc:
            return CheckResult(False, f"order-service does not answer ({type(exc).__name__})",
                               "order-service running and answering")
        if order.get("status") != "CONFIRMED":
            return CheckResult(False, f"order {oid} is {order.get('status')} at order-service",
                               "CONFIRMED")
        # The lab works again: a new order goes through end to end.
        try:
            probe = lab.saga.place_order(ALICE, list(DEFAULT_LINES))
            view = lab.saga.wait(probe, timeout=30)
        except Exception as exc:
            return CheckResult(False, f"saga {sid} completed, but a new order does not: {exc}",
                               "a new order completes")
        if view["status"] != "completed":
            return CheckResult(False, f"a new order's saga ended {view['status']} "
                                      f"({view.get('failure')})", "completed")
        return CheckResult(True, f"saga {sid} completed, order {oid} CONFIRMED at "
                                 "order-service, and a new order completes too")

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        lab.close()
        lab.runtime.up(wait=True, progress=False)
        with contextlib.suppress(Exception):
            lab.faults.clear("order-service")
        wait_for(lambda: lab.saga.state(context["saga_id"]).terminal, timeout=60,
                 what=f"saga {context['saga_id']} ending after order-service started again")
        return "started order-service again; the orchestrator confirmed the order"
