"""`lab.challenge`: start, hint, check, give up; the active challenge lives in the data dir."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.lab.challenges.base import Challenge, ChallengeError, CheckResult
from labkit.lab.challenges.registry import CHALLENGES, get

STATE_FILE = "challenge.json"


class Briefing(str):
    """Text that shows as itself in a notebook (no quotes, real line breaks)."""

    def __repr__(self) -> str:
        return str(self)


def _fill(text: str, context: dict[str, Any]) -> str:
    try:
        return text.format(**context)
    except (KeyError, IndexError, ValueError):
        return text


class ChallengeClient:
    """The challenge part of the notebook API (`lab.challenge`), also behind the CLI."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab

    # ---- state ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return Path(self.lab.settings.data_dir) / STATE_FILE

    def active(self) -> dict[str, Any] | None:
        """The active challenge's state (name, started_at, hints_shown, solved_at, context)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return state if isinstance(state, dict) and state.get("name") in CHALLENGES else None

    def _save(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, default=str))
        tmp.replace(self.state_file)

    def _require_active(self) -> tuple[Challenge, dict[str, Any]]:
        state = self.active()
        if state is None:
            raise ChallengeError("no challenge is active; start one: `labkit challenge start "
                                 "NAME` (`labkit challenge list` shows them)")
        return CHALLENGES[state["name"]], state

    # ---- the commands --------------------------------------------------------------------
    def challenges(self) -> list[dict[str, Any]]:
        """Every challenge: name, topic, title, and whether it is the active one."""
        state = self.active() or {}
        rows = []
        for c in CHALLENGES.values():
            status = ""
            if state.get("name") == c.name:
                status = "solved" if state.get("solved_at") else "active"
            rows.append({"name": c.name, "topic": c.topic, "title": c.title,
                         "status": status})
        return rows

    def table(self) -> Any:
        """`list()` as a DataFrame (the notebook shows it as a table)."""
        import pandas as pd

        return pd.DataFrame(self.challenges(), columns=["name", "topic", "title", "status"])

    def start(self, name: str) -> Briefing:
        """Break the running lab as challenge `name` does; returns the story to solve."""
        challenge = get(name)
        state = self.active()
        if state is not None and not state.get("solved_at"):
            raise ChallengeError(
                f"challenge {state['name']!r} is still active: solve it (`labkit challenge "
                "check`) or give up on it (`labkit challenge give-up`) first")
        if getattr(self.lab, "mode", "local") == "local":
            # A challenge breaks a running lab (with fault injection, if it uses it).
            self.lab.up(progress=False, faults=True if challenge.needs_faults else None)
        context = challenge.start(self.lab)
        self._save({"name": name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "hints_shown": 0, "checks": 0, "solved_at": None, "context": context})
        return Briefing(f"challenge {name}: {challenge.title}\n\n"
                        f"{_fill(challenge.story, context)}\n\n"
                        "`labkit challenge hint` (lab.challenge.hint()) gives a hint, one more "
                        "each time; `labkit challenge check` tests your fix; "
                        "`labkit challenge give-up` repairs the lab.")

    def briefing(self) -> Briefing:
        """The active challenge's story again."""
        challenge, state = self._require_active()
        return Briefing(f"challenge {challenge.name}: {challenge.title}\n\n"
                        f"{_fill(challenge.story, state['context'])}")

    def hint(self) -> Briefing:
        """The next hint (hint 1 of N, then 2, ...; the last one is the fix)."""
        challenge, state = self._require_active()
        n = min(int(state.get("hints_shown", 0)) + 1, len(challenge.hints))
        state["hints_shown"] = n
        self._save(state)
        more = "" if n < len(challenge.hints) else " (the last one: it is the fix)"
        return Briefing(f"hint {n} of {len(challenge.hints)}{more}: "
                        f"{_fill(challenge.hints[n - 1], state['context'])}")

    def check(self) -> CheckResult:
        """Probe the system: ✅ when the fix works, else ❌ with what was seen. Never raises
        for a challenge that is not solved yet."""
        state = self.active()
        if state is None:
            return CheckResult(False, "no challenge is active",
                               "`labkit challenge start NAME` first", status="nothing to check")
        challenge = CHALLENGES[state["name"]]
        started = time.perf_counter()
        try:
            result = challenge.check(self.lab, state["context"])
        except Exception as exc:  # a check must not stop the notebook
            result = CheckResult(False, f"the check could not probe the lab: "
                                        f"{type(exc).__name__}: {exc}")
        state["checks"] = int(state.get("checks", 0)) + 1
        if result.ok and not state.get("solved_at"):
            state["solved_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            state["solved_after_hints"] = state.get("hints_shown", 0)
        state["last_check_s"] = round(time.perf_counter() - started, 2)
        self._save(state)
        return result

    def give_up(self) -> Briefing:
        """Repair the lab the model answer's way; the challenge is no longer active."""
        challenge, state = self._require_active()
        if getattr(self.lab, "mode", "local") == "local":
            # Start whatever is down (e.g. after `labkit down`) without waiting for readiness:
            # a broken service may not become ready until the repair below.
            self.lab.runtime.up(wait=False, progress=False)
        done = challenge.give_up(self.lab, state["context"])
        self._save(None)
        return Briefing(f"gave up on {challenge.name}: {done}. The last hint was the fix: "
                        f"{_fill(challenge.hints[-1], state['context'])}")

    def status(self) -> dict[str, Any]:
        """The active challenge (or `{"active": None}`)."""
        state = self.active()
        if state is None:
            return {"active": None}
        return {"active": state["name"], **{k: v for k, v in state.items() if k != "name"}}
