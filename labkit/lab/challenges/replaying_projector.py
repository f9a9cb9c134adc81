"""`replaying-projector`: a projector build that commits its checkpoint apart from its writes.

A "faster" build of the event processor is deployed (`LABKIT_CHALLENGE_DEFECT=checkpoint-apart`,
see `ecommerce/projections/checkpoint_apart.py`; it says so in its log at start and
`labkit status` shows the change). It commits the read-model writes at once but its checkpoint
only when it stops cleanly. Then the node reboots (the process is SIGKILLed): the new process
starts from the old checkpoint and applies the same events again. Documents come out the same;
counters do not: user-stats counts the users twice. The checkpoints also never move while it
runs.

Fix, in two parts: (1) deploy a processor that commits the checkpoint in the same transaction
as its writes: roll back to the manifests' build (`labkit rollback event-processor`), or deploy
corrected code; (2) repair the numbers already wrong: rebuild the read model from the log
(`labkit replay`). Check: the read model matches the log, and still does after the check has
SIGKILLed the processor and started it again.
"""

from __future__ import annotations

from typing import Any

from ecommerce.projections.processor import DEFECT_ENV
from labkit.lab.challenges.base import Challenge, CheckResult, probe_user, require_local, wait_for
from labkit.lab.challenges.readmodel import compare_users, users_in_log
from labkit.lab.challenges.skipped_events import PROCESSOR

BUILD_NOTE = ("build 2.4.0-fast-checkpoints: checkpoint saved apart from the writes "
              f"({DEFECT_ENV}=checkpoint-apart)")


def _stats_total(lab: Any) -> int:
    return int(lab.query("user-stats")["total_users"])


def reboot(lab: Any) -> None:
    """SIGKILL the event processor (a node reboot) and start it again as deployed."""
    lab.close()
    lab.runtime.kill(PROCESSOR)
    lab.runtime.up(wait=True, progress=False)


def new_visible_user(lab: Any, label: str) -> str:
    from labkit.lab.challenges.base import visible

    user_id, _ = probe_user(lab, label)
    wait_for(lambda: visible(lab, user_id), timeout=15, what=f"{label} in query-service")
    return user_id


class ReplayingProjector(Challenge):
    name = "replaying-projector"
    title = "After a reboot the dashboard counts more users than there are"
    topic = "04-event-sourcing"
    story = (
        "Last night the node running the event processor rebooted. Since then the dashboard "
        "(user-stats) says there are {total} users, but nobody signed up twice and the log has "
        "{logged} UserCreated events. It happened once before, after another reboot. Find out "
        "why a restart makes the read side count events again, make sure the next restart "
        "cannot, and repair the numbers."
    )
    hints = (
        "Compare the read side with the log: lab.query('user-stats') and "
        "len(lab.events(type='UserCreated')). Now lab.checkpoints(): is the processor's "
        "checkpoint moving while users are created?",
        "What is deployed? `labkit status` (the DETAIL column) and the first lines of "
        "`labkit logs event-processor`. Then read ecommerce/projections/checkpoint_apart.py "
        "next to Projector.step in ecommerce/projections/projector.py.",
        "A projector must commit its checkpoint in the same transaction as the writes it "
        "made; otherwise a crash between the two replays events, and counters (Incr) count "
        "them twice. Deploy a processor that does: `labkit rollback event-processor` (back "
        "to the manifests' build).",
        "The counts that are already wrong stay wrong until the read model is rebuilt from the "
        "log: `labkit replay` (lab.replay()). Roll back first, then replay.",
    )
    tools = ("lab.query('user-stats')", "lab.events()", "lab.checkpoints()", "labkit status",
             "labkit logs event-processor")

    def start(self, lab: Any) -> dict[str, Any]:
        require_local(lab, self)
        lab.close()
        lab.runtime.set_override(PROCESSOR, {DEFECT_ENV: "checkpoint-apart"}, BUILD_NOTE)
        lab.runtime.restart_one(PROCESSOR)
        for i in range(1, 4):
            new_visible_user(lab, f"Night signup {i}")
        reboot(lab)
        logged = len(users_in_log(lab.saga.store))
        total = wait_for(lambda: (t := _stats_total(lab)) > logged and t, timeout=30,
                         what="the restarted processor applying events again")
        return {"total": total, "logged": logged}

    def check(self, lab: Any, context: dict[str, Any]) -> CheckResult:
        try:
            new_visible_user(lab, "Probe user")
            wrong = compare_users(lab)
            if wrong:
                return CheckResult(False, "the read side does not match the log",
                                   "user-stats and the users view count exactly the users of "
                                   "the log", tuple(wrong))
            reboot(lab)  # the probe: a crash must not make it count anything twice
            new_visible_user(lab, "Probe user")
            wrong = compare_users(lab)
        except Exception as exc:
            return CheckResult(False, f"could not probe the read side: {exc}")
        if wrong:
            return CheckResult(False, "the counts were right, but after the check SIGKILLed "
                                      "the event processor and started it again they are wrong",
                               "a restart applies no event twice", tuple(wrong))
        return CheckResult(True, "the read side matches the log, also after the check "
                                 "SIGKILLed the event processor and started it again")

    def give_up(self, lab: Any, context: dict[str, Any]) -> str:
        lab.close()
        lab.runtime.clear_override(PROCESSOR)
        lab.runtime.restart_one(PROCESSOR)
        stats = wait_for(lab.replay, timeout=60, what="a replay of the read model")
        return ("rolled the event processor back to the manifests' build and rebuilt the read "
                f"model from the log ({stats.get('events_count')} events)")
