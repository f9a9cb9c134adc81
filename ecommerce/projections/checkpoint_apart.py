"""A DELIBERATE DEFECT for the challenge `replaying-projector` (`labkit challenge`): never used
unless the event processor is started with `LABKIT_CHALLENGE_DEFECT=checkpoint-apart`, which it
announces in its log at start (and `labkit status` shows as a change to its deployment).

The mistake it reproduces is a common one: the projector commits its read-model writes in one
transaction and its checkpoint in another, later one ("saving the checkpoint every few
seconds is cheaper"). Killed between the two, it restarts from the older checkpoint and
applies the same events again: `Put` documents come out the same, but counters (`Incr`, e.g.
user-stats' total_users) count them twice. The correct projector (`Projector.step`) commits
both together, atomically.
"""

from __future__ import annotations

import time
from typing import Any

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.projections.projector import Projector

DEFECT = "checkpoint-apart"
#: Seconds between the separate checkpoint saves.
SAVE_EVERY = 30.0


class CheckpointApartProjector(Projector):
    """Writes committed without their checkpoint; the checkpoint is saved every `save_every`
    seconds and at a clean stop (`save`), so a kill in between replays the events since."""

    save_every = SAVE_EVERY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memory: dict[str, int] | None = None
        self._saved_at = time.monotonic()

    def step(self) -> int:
        stored = super().checkpoints()
        if self._memory is None:
            self._memory = dict(stored)
        buffer, count, last = self._project_past_parked(min(self._memory.values()),
                                                        self._memory)
        if count:
            # The defect: the writes go in with the *stored* checkpoints, unchanged...
            self.reads.commit(buffer, stored, stored, source=self.events.log_id())
            # ...and the new position lives only in this process's memory until `save`.
            self._memory = {n: max(p, last) for n, p in self._memory.items()}
        if time.monotonic() - self._saved_at > self.save_every:
            self.save()
        return count

    def save(self) -> None:
        """Write the remembered checkpoints (a separate transaction from the writes)."""
        if self._memory is None:
            return
        stored = super().checkpoints()
        self.reads.commit(WriteBuffer(), self._memory, stored, source=self.events.log_id())
        self._saved_at = time.monotonic()
