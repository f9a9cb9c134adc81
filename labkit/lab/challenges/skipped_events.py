"""`skipped-events`: a checkpoint moved by hand, and the events it jumped over are lost.

The event processor was down for a while, the lag alert fired, and someone "fixed" it by
setting every projection's checkpoint to the head of the log. The alert stopped: the
checkpoints say the read side is up to date. But the events between the old checkpoints and
the head were never projected: users who signed up during the outage exist in the log (their
commands were accepted; a second sign-up with their e-mail is refused) and nowhere in
query-service, and the user count is short.

Fix: rebuild the read model from the log (`labkit replay`, lab.replay()): the log is the
truth, the read model is derived from it. Check: every user of the log is in query-service,
and user-stats counts exactly the users of the log.
"""

from __future__ import annotations

import signal
from typing import Any

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.projections import PROJECTIONS
from ecommerce.store.factory import open_read_store
from labkit.lab.challenges.base import Challenge, CheckResult, probe_user, require_local, wait_for
from labkit.lab.challenges.readmodel import compare_users

PROCESSOR = "event-processor"


def caught_up(lab: Any, position: int) -> bool:
    cps = lab.query("checkpoints")["checkpoints"]
    return bool(cps) and all(cp["position"] >= position for cp in cps.values())


class SkippedEvents(Challenge):
    name = "skipped-events"
    title = "Users who signed up during an outage are missing"
    topic = "03-cqrs"
    story = (
        "Yesterday the event processor was down for a while; the on-call engineer cleared the "
        "lag alert and went back to bed. Today {count} customers who signed up during the "
        "outage ({users}) say they are not in the user list, and the dashboard's user count "
        "is short. Their sign-ups were accepted. The checkpoints say the read side is up to "
        "date. Find out what happened and repair the read side."
    )
    hints = (
        "Is one of them in the log? lab.events(type='UserCreated') or "
        "lab.stream('user-{first}'). And in query-service? lab.query('users'), "
        "GET /api/queries/users/{first}.",
        "lab.checkpoints(): the read side claims to be at the head. Then why was the event "
        "never applied? Compare the position of that user's event with the processor's log "
        "(`labkit logs event-processor`: its 'following' line shows the checkpoints it started "
        "from).",
        "The checkpoints were moved past events that were never projected. The projector only "
        "ever reads forward from its checkpoint, so it will never go back for them.",
        "The read model is derived from the log: rebuild it. `labkit replay` (or lab.replay()) "
        "projects the whole log beside the live model and swaps it in.",
    )
    tools = ("lab.events()", "lab.query('users')", "lab.checkpoints()",
             "labkit logs event-processor")

    def start(self, lab: Any) -> dict[str, Any]:
        require_local(lab, self)
        lab.runtime.kill(PROCESSOR, signal.SIGTERM)  # "down for a while"
        users = [probe_user(lab, f"Outage signup {i}")[0] for i in range(1, 4)]
        store = lab.saga.store
        reads = open_read_store(lab.settings)
        try:
            stored = {n: cp.position for n, cp in reads.checkpoints().items()}
            expected = {n: stored.get(n, 0) for n in PROJECTIONS}
            head = store.last_position()
            reads.commit(WriteBuffer(), dict.fromkeys(expected, head), expected,
                         source=store.log_id())
        finally:
            reads.close()
        lab.close()
        lab.runtime.up(wait=True, progress=False)
        wait_for(lambda: caught_up(lab, head), timeout=30, what="the event processor running")
        return {"users": ", ".join(users), "first": users[0], "count": len(users)}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        try:
            _, at = probe_user(lab, "Probe user")
            wait_for(lambda: caught_up(lab, at), timeout=15,
                     what="the read side catching up with a new user")
            wrong = compare_users(lab)
        except Exception as exc:
            return CheckResult(False, f"could not compare the read side with the log: {exc}")
        if wrong:
            return CheckResult(False, "the read side does not match the log",
                               "every user of the log in query-service; user-stats counts "
                               "exactly them", tuple(wrong))
        return CheckResult(True, "the read side matches the log: every user is in "
                                 "query-service and user-stats counts exactly them")

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        stats = wait_for(lab.replay, timeout=60, what="a replay of the read model")
        return f"rebuilt the read model from the log ({stats.get('events_count')} events)"
