"""The projector: a catch-up subscription from each projection's checkpoint.

Each batch is read from the global log, projected, folded and committed to the read store
together with the new checkpoints, in one atomic step guarded by compare-and-set. Killed at
any moment, a projector restarts from the last committed checkpoint: no event is applied
twice and none is skipped.

A read model belongs to one event log. If the log is replaced (deleted and re-created,
restored from elsewhere, wiped), applying its events on top of the old model would mix two
histories, and a checkpoint ahead of the new log's head would hide every new event. So each
step checks the log's identity against the one the model was built from, and a checkpoint
against the head, and raises `LogReplaced` instead; the event processor then rebuilds the
model from the new log (`ecommerce.projections.processor`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.health import Heartbeat
from ecommerce.projections.base import Handler, Projection
from ecommerce.projections.parking import parked_positions
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import Checkpoint, CheckpointConflict, ReadStore, SourceMismatch
from ecommerce.store.wakeup import Waiter

#: Seconds between polls while events keep coming, without database wake-ups (SQLite): the
#: interval the processor always polled at, so under load it costs and lags as before.
BUSY_POLL = 0.02
#: Woken by the database while events keep coming, wait this long more before projecting, so a
#: batch takes several appends (each batch costs a few round trips to both stores).
GATHER = 0.005


class ProjectionError(Exception):
    """A projection function failed on an event; the batch was not committed. `position`: the
    event's (park it with `labkit events park POSITION` if it must be skipped)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


def _via(p: Projection) -> Handler:
    """A handler that goes through `p.project` (a Projection subclass that overrides it)."""
    return p.project


class LogReplaced(Exception):
    """The event log is not the one the read model was built from: rebuild the model."""


class Projector:
    def __init__(
        self,
        events: EventStore,
        reads: ReadStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        if not projections:
            raise ValueError("the projector needs at least one projection")
        self.events, self.reads = events, reads
        self.projections = list(projections)
        self.batch_size = batch_size
        #: Told (once per occurrence) when the checkpoints went back to 0 under this projector.
        self.on_notice = on_notice
        self._high = 0
        #: Every event at or below it was projected when the last step ended (its followers
        #: need not be woken for those appends).
        self.seen_upto: int | None = None
        #: Parked positions (read when a projection fails), and those already reported.
        self._parked: set[int] = set()
        self._told_parked: set[int] = set()
        #: Event type -> (projection name, its handler) for each projection reacting to it: the
        #: per-event loop calls handlers directly (a subclass that overrides `project` is called
        #: through it).
        by_type: dict[str, list[tuple[str, Handler]]] = {}
        for p in self.projections:
            for t in p.event_types:
                handler = p.handlers[t] if type(p).project is Projection.project else _via(p)
                by_type.setdefault(t, []).append((p.name, handler))
        self._by_type = {t: tuple(hs) for t, hs in by_type.items()}

    def checkpoints(self) -> dict[str, int]:
        return self._positions(self.reads.checkpoints())

    def _positions(self, stored: Mapping[str, Checkpoint]) -> dict[str, int]:
        """Each projection's checkpoint position (0: none stored yet)."""
        return {p.name: stored[p.name].position if p.name in stored else 0 for p in self.projections}

    def step(self) -> int:
        """Project one batch. Returns the number of events read (0 only when caught up).

        If another projector commits first (checkpoint conflict), reload the checkpoints and
        carry on from where it got to: its commit was progress, so this always terminates.
        Raises `LogReplaced` when the log is not the one the model was built from.
        """
        while True:
            stored, built_from = self.reads.checkpoints_and_source()
            cps = self._positions(stored)
            self._note_reset(cps)
            start = min(cps.values())
            buffer, count, last = self._project_past_parked(start, cps)
            # The log's identity is read after its events: a wipe or a restore before or while
            # they were read shows here, and the commit refuses a model built from another log.
            log = self.events.log_id()
            if built_from is not None and built_from != log:
                raise LogReplaced(
                    f"the read model was built from event log {built_from[:12]}, but the log is "
                    f"now {log[:12]}: it was replaced, restored or wiped"
                )
            if not count:
                self._check_head(cps)
                self.seen_upto = start
                return 0
            new = {name: max(pos, last) for name, pos in cps.items()}
            try:
                self.reads.commit(buffer, new, cps, source=log)
            except CheckpointConflict:
                continue
            except SourceMismatch as exc:
                raise LogReplaced(f"{exc}: the log was replaced meanwhile") from None
            self._high = max(self._high, last)
            self.seen_upto = last
            return count

    def _check_head(self, cps: dict[str, int]) -> None:
        ahead = max(cps.values())
        if ahead == 0:
            return
        head = self.events.last_position()
        if ahead > head:
            raise LogReplaced(
                f"checkpoint {ahead} is ahead of the event log's head {head}: the log was "
                "replaced or truncated"
            )

    def _note_reset(self, cps: dict[str, int]) -> None:
        if self._high and not any(cps.values()):
            if self.on_notice is not None:
                self.on_notice(
                    f"the checkpoints went back from {self._high} to 0: the read store was reset "
                    "or emptied (e.g. Redis flushed); projecting the whole log again"
                )
            self._high = 0

    def _project_past_parked(self, start: int, cps: dict[str, int]
                             ) -> tuple[WriteBuffer, int, int]:
        """`_project`; when it fails on an event an operator parked (`parking`), project the
        batch again without that event (for every projection) and say so once."""
        skip: set[int] = set()
        while True:
            try:
                return self._project(start, cps, skip)
            except ProjectionError as exc:
                if exc.position is None or exc.position in skip:
                    raise
                if exc.position not in self._parked:
                    self._parked = parked_positions(self.events)
                    if exc.position not in self._parked:
                        raise
                skip.add(exc.position)
                if exc.position not in self._told_parked and self.on_notice is not None:
                    self._told_parked.add(exc.position)
                    self.on_notice(f"skipping parked event #{exc.position}: {exc}")

    def _project(self, start: int, cps: dict[str, int], skip: set[int] | None = None
                 ) -> tuple[WriteBuffer, int, int]:
        """Project the next batch after position `start` into a new buffer, one event at a
        time as the store streams them (so the batch is never held whole). Returns the
        buffer, the number of events read and the last one's position."""
        buffer = WriteBuffer()
        add_all = buffer.add_all
        handlers_of = self._by_type.get
        # Every projection at the same checkpoint (the usual case): no per-event check needed.
        aligned = len(set(cps.values())) == 1
        count = 0
        for count, e in enumerate(self.events.stream_all(start, self.batch_size), 1):  # noqa: B007
            handlers = handlers_of(e.type)
            if handlers is None or (skip and e.position in skip):
                continue
            name = ""
            try:
                for name, handler in handlers:
                    if aligned or e.position > cps[name]:
                        add_all(handler(e))
            except Exception as exc:
                raise ProjectionError(
                    f"projection {name!r} failed on event #{e.position} ({e.type} in "
                    f"{e.stream_id}): {exc!r}", e.position
                ) from exc
        return buffer, count, e.position if count else start

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

    def follow(self, stop: threading.Event, poll_interval: float | None = None,
               on_error: Callable[[Exception], None] | None = None, *, busy: float = BUSY_POLL,
               gather: float = GATHER,
               waiter: Waiter | None = None, heartbeat: Heartbeat | None = None) -> None:
        """Keep projecting until `stop` is set.

        Between polls it waits the store's way (`EventStore.waiter`): PostgreSQL wakes it at
        each append it has not projected yet (while events keep coming, `gather` s later, to
        take several in one batch); otherwise it polls every `busy` s while events keep coming
        (at once after a full batch) and backs off at rest, up to `poll_interval` s (default
        250 ms). Each turn beats `heartbeat`.
        """
        waiter = waiter or self.events.waiter(idle_max=poll_interval, busy=busy, gather=gather)
        try:
            while not stop.is_set():
                try:
                    n = self.step()
                except Exception as exc:
                    if heartbeat is not None:
                        heartbeat.beat(False, f"{type(exc).__name__}: {str(exc)[:600]}",
                                       "projections" if isinstance(exc, ProjectionError)
                                       else "")
                    if on_error is None:
                        raise
                    on_error(exc)
                    stop.wait(1.0)
                    continue
                if heartbeat is not None:
                    heartbeat.beat()
                if n < self.batch_size:
                    waiter.wait(stop, n, self.seen_upto)
        finally:
            waiter.close()

