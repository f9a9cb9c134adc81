"""`poison-event`: one malformed event stops the whole read side.

A script of another team ("resend confirmations") appends a second `OrderConfirmed` for an
order that is confirmed already, with the total as a decimal string ("129.00") instead of
integer cents. order-service does not mind (confirming twice changes nothing), but the orders
projection adds `int(total)` to the confirmed revenue and fails on it. The projector commits
batches atomically, so the batch holding that event never commits, and every retry fails on
the same event: nothing after it reaches the read model. New users are accepted by
command-service but never appear in query-service.

The log is append-only: the event cannot be edited or deleted. Fix: read the processor's log,
look at the event (`labkit events tail`, lab.events()), decide it must not be projected, and
park it: `labkit events park POSITION --reason ...` appends an `EventParked` record, which the
projector honours when it fails on that event (a replay makes the same decision). A plugin
cannot stand in for the orders projection (`ecommerce.plugins.projection` refuses the lab's own
names and collections), and an upcaster that turns "129.00" into 12900 unblocks the read side
but still counts the order twice, which the check sees: it looks only at behaviour. Check: a
new user appears in query-service, every projection is past the event, and the dashboard counts
each confirmed order once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ecommerce.domain import orders as o
from ecommerce.domain.events import NewEvent
from ecommerce.projections.parking import park
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.lab.challenges.base import (
    Challenge,
    CheckResult,
    probe_user,
    require_local,
    visible,
    wait_for,
)


def _processor_failed_on(lab: Any, position: int) -> bool:
    return _failures_on(lab, position, since=None) > 0


def _failures_on(lab: Any, position: int, since: datetime | None) -> int:
    """How many of the processor's recent log lines say it failed on event #position (only
    those logged after `since`, if given)."""
    needle = f"failed on event #{position} "
    count = 0
    for line in lab.logs("event-processor", tail=50).splitlines():
        if needle not in line:
            continue
        if since is not None:
            try:
                if datetime.fromisoformat(json.loads(line)["ts"]) <= since:
                    continue
            except (ValueError, KeyError, TypeError):
                continue
        count += 1
    return count


class PoisonEvent(Challenge):
    name = "poison-event"
    title = "New users never show up in the user list"
    topic = "04-event-sourcing"
    story = (
        "Since a few minutes ago, users who sign up are accepted (create-user answers 202) but "
        "never appear in the user list (query-service), and the order dashboard is frozen too. "
        "Find out why the read side stopped and get it going again. The event log is "
        "append-only: editing or deleting events is not an option."
    )
    hints = (
        "How far is each projection? lab.checkpoints() (or GET /api/queries/checkpoints) next "
        "to the head of the log: are they moving?",
        "The event processor says why: `labkit status` (its DETAIL) and its log, "
        "`labkit logs event-processor`. Which projection fails, on which event (position, "
        "type, stream), with which error?",
        "Look at that event and its neighbours: `labkit events tail --after {before}` (or "
        "lab.events(after={before}, limit=5)). Who wrote it (metadata), and is it needed at all "
        "(is that order not confirmed already)?",
        "Park it, with the reason, so the projector skips it: "
        "`labkit events park {position} --reason 'duplicate OrderConfirmed with a decimal total'` "
        "(or lab.park_event({position}, '...')). Then watch lab.checkpoints() catch up.",
    )
    tools = ("lab.checkpoints()", "labkit logs event-processor", "labkit events tail",
             "lab.events()")

    def start(self, lab: Any) -> dict[str, Any]:
        require_local(lab, self)
        sid = lab.fire("happy", wait=True)
        state = lab.saga.state(sid)
        oid, total = state.order_id, state.amount
        event = NewEvent(o.ORDER_CONFIRMED, {"order_id": oid, "total": f"{total / 100:.2f}"},
                         {"producer": "billing/resend-confirmations", "schema": "v2-draft"})
        result = lab.saga.store.append(o.stream_id(oid), [event], "any")
        position = result.positions[0]
        user_id, _ = probe_user(lab, "Stalled user")
        wait_for(lambda: _processor_failed_on(lab, position), timeout=30,
                 what=f"the event processor failing on event #{position}")
        return {"position": position, "before": position - 1, "order_id": oid,
                "stalled_user": user_id}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        position = int(context["position"])
        since = datetime.now(UTC)
        try:
            user_id, at = probe_user(lab, "Probe user")
        except Exception as exc:
            return CheckResult(False, f"command-service refused a new user: {exc}")

        def outcome() -> str | None:
            if visible(lab, user_id):
                return "visible"
            # The processor retries a failed batch a second after each failure: a second
            # failure on the event after `since` began after this check did, so the event
            # still stops the read side. Say so now instead of waiting out the timeout.
            return "stopped" if _failures_on(lab, position, since) >= 2 else None

        try:
            seen = wait_for(outcome, timeout=15, what="the new user in query-service")
        except Exception:
            seen = "timeout"
        if seen != "visible":
            behind = self._behind(lab, position)
            why = (f"the event processor still fails on event #{position}" if seen == "stopped"
                   else "it is not there after 15s")
            return CheckResult(False, f"a new user ({user_id}, event #{at}) is not in "
                                      f"query-service: {why}",
                               "the read side follows the log again",
                               tuple(behind))
        behind = self._behind(lab, at)
        if behind:
            return CheckResult(False, "the new user is visible, but not every projection is "
                                      f"past event #{at}", "every projection caught up",
                               tuple(behind))
        counted = self._confirmed_counts(lab)
        if counted is not None:
            shown, confirmed = counted
            return CheckResult(False, f"the order dashboard counts {shown} confirmed orders, "
                                      f"but order-service has {confirmed}",
                               "each confirmed order counted once (the resent OrderConfirmed "
                               "is a duplicate)")
        return CheckResult(True, f"the read side follows the log again: a new user is in "
                                 f"query-service, every projection is past event #{position}, "
                                 "and each confirmed order is counted once")

    @staticmethod
    def _confirmed_counts(lab: Any) -> tuple[int, int] | None:
        """(dashboard, order-service) confirmed counts while they differ after 10 s, else None."""

        def counts() -> tuple[int, int]:
            by_status = lab.query("orders", limit=1).get("by_status") or {}
            orders = lab.http("order-service").get("/api/orders",
                                                   params={"status": o.CONFIRMED, "limit": 1})
            return int(by_status.get("confirmed", 0)), int(orders.json()["total"])

        try:
            wait_until(counts, until=lambda c: c[0] == c[1], timeout=10,
                       what="the dashboard's confirmed count")
        except WaitTimeout as exc:
            return exc.last
        return None

    @staticmethod
    def _behind(lab: Any, position: int) -> list[str]:
        try:
            cps = lab.query("checkpoints")["checkpoints"]
        except Exception as exc:
            return [f"query-service's checkpoints: {exc}"]
        return [f"projection {name} is at position {cp['position']} (< {position})"
                for name, cp in sorted(cps.items()) if cp["position"] < position]

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        position = int(context["position"])
        park(lab.saga.store, position, "challenge poison-event given up: duplicate "
             "OrderConfirmed with a decimal-string total", by="labkit challenge give-up")
        head = lab.saga.store.last_position()
        wait_for(lambda: not self._behind(lab, head), timeout=30,
                 what="the read side catching up past the parked event")
        return f"parked event #{position}; the read side caught up to position {head}"
