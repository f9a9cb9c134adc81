"""The projector: a catch-up subscription from each projection's checkpoint.

Each batch is read from the global log, projected, folded and committed to the read store
together with the new checkpoints, in one atomic step guarded by compare-and-set. Killed at
any moment, a projector restarts from the last committed checkpoint: no event is applied
twice and none is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.projections.base import Projection
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import CheckpointConflict, ReadStore


class ProjectionError(Exception):
    """A projection function failed on an event; the batch was not committed."""


class Projector:
    def __init__(
        self,
        events: EventStore,
        reads: ReadStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
    ) -> None:
        if not projections:
            raise ValueError("the projector needs at least one projection")
        self.events, self.reads = events, reads
        self.projections = list(projections)
        self.batch_size = batch_size
        self._by_type: dict[str, list[Projection]] = {}
        for p in self.projections:
            for t in p.event_types:
                self._by_type.setdefault(t, []).append(p)

    def checkpoints(self) -> dict[str, int]:
        stored = self.reads.checkpoints()
        return {p.name: stored[p.name].position if p.name in stored else 0 for p in self.projections}

    def step(self) -> int:
        """Project one batch. Returns the number of events read (0 only when caught up).

        If another projector commits first (checkpoint conflict), reload the checkpoints and
        carry on from where it got to: its commit was progress, so this always terminates.
        """
        while True:
            cps = self.checkpoints()
            batch = self.events.read_all(min(cps.values()), self.batch_size)
            if not batch:
                return 0
            buffer = self._project(batch, cps)
            last = batch[-1].position
            new = {name: max(pos, last) for name, pos in cps.items()}
            try:
                self.reads.commit(buffer, new, cps)
            except CheckpointConflict:
                continue
            return len(batch)

    def _project(self, batch: list, cps: dict[str, int]) -> WriteBuffer:
        buffer = WriteBuffer()
        add = buffer.add
        by_type = self._by_type
        # Every projection at the same checkpoint (the usual case): no per-event check needed.
        aligned = len(set(cps.values())) == 1
        for e in batch:
            for p in by_type.get(e.type, ()):
                if aligned or e.position > cps[p.name]:
                    try:
                        for w in p.project(e):
                            add(w)
                    except Exception as exc:
                        raise ProjectionError(
                            f"projection {p.name!r} failed on event #{e.position} ({e.type} in "
                            f"{e.stream_id}): {exc!r}"
                        ) from exc
        return buffer

    def run_once(self, progress: Callable[[int], None] | None = None) -> int:
        """Catch up to the head of the log, then return the number of events read."""
        total = 0
        while n := self.step():
            total += n
            if progress:
                progress(n)
        return total

    def lag(self) -> int:
        """How many positions the slowest projection is behind the head of the log."""
        return max(0, self.events.last_position() - min(self.checkpoints().values()))

    def follow(self, stop: threading.Event, poll_interval: float = 0.05,
               on_error: Callable[[Exception], None] | None = None) -> None:
        """Keep projecting until `stop` is set; idle polls every `poll_interval` seconds."""
        while not stop.is_set():
            try:
                n = self.step()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
                stop.wait(1.0)
                continue
            if n < self.batch_size:
                stop.wait(poll_interval)


def wait_until_caught_up(projector: Projector, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if projector.lag() == 0:
            return True
        time.sleep(0.01)
    return False
