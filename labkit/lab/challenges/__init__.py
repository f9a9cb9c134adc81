"""Challenge mode (도전 과제): break the running lab, diagnose it with the lab's tools, fix it.

    labkit challenge list | start NAME | hint | check | give-up | status
    lab.challenge.start("stuck-saga"); lab.challenge.hint(); lab.challenge.check()

One challenge is active at a time. Its state (name, what `start` did, hints shown) is kept in
`<data dir>/challenge.json`, so the CLI and a notebook see the same active challenge. Each
challenge is a module here; `CHALLENGES` lists them in the course's order.
"""

from __future__ import annotations

from labkit.lab.challenges.base import Challenge, ChallengeError, CheckResult
from labkit.lab.challenges.client import ChallengeClient
from labkit.lab.challenges.registry import CHALLENGES, get

__all__ = ["CHALLENGES", "Challenge", "ChallengeClient", "ChallengeError", "CheckResult", "get"]
