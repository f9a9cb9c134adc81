"""Replay: rebuild projections' read models from position 0, beside the live ones, then swap.

The new model is built in a staging generation of the read store (`ReadStore.stage`), batch
by batch (memory stays the same whatever the log's length), until it has caught up with the
head of the log; then one atomic swap makes it live with its checkpoints. Queries see the old
model until the swap and the new one after it, never an empty one, and a projector following
the log meanwhile keeps the old model current and then continues on the new one.

The figures cover the whole rebuild: the clock runs from staging to the swap (dropping the old
generation afterwards is timed separately), and `events` counts the events this replay read.

`python -m ecommerce.projections.replay --all` is the Kubernetes replay Job's entrypoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ecommerce.projections import get_projections
from ecommerce.projections.base import Projection
from ecommerce.projections.projector import ProjectionError, Projector
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import ReadStore

#: Events per committed batch. The projector streams each batch, so this bounds the folded
#: writes held before a commit: a few thousand events keep them in the CPU's caches, and
#: replay's memory the same whatever the log's length (`labkit bench replay`).
REPLAY_BATCH = 2500


@dataclass(frozen=True)
class ReplayStats:
    projections: list[str]
    #: Events this replay read and projected (the whole log up to `position`).
    events: int
    #: From staging the new generation to swapping it in.
    seconds: float
    events_per_s: float
    position: int
    #: Dropping the replaced generation, after the swap.
    cleanup_seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def replay(
    events: EventStore,
    reads: ReadStore,
    projections: Sequence[Projection] | None = None,
    *,
    progress: bool = True,
    batch_size: int = REPLAY_BATCH,
    note: str | None = None,
) -> ReplayStats:
    """Rebuild the projections (all by default) from the whole log; return throughput.

    `note` says why (an automatic rebuild); it is kept for `/readyz` until the next replay.
    """
    chosen = list(projections) if projections else get_projections()
    collections = [c for p in chosen for c in p.collections]
    started = time.perf_counter()
    staged = reads.stage(collections, [p.name for p in chosen], events.log_id())
    projector = Projector(events, staged, chosen, batch_size=batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=events.last_position(), unit="pos", desc="replay", unit_scale=True,
                   leave=True)
    count = 0
    try:
        while n := projector.step():
            count += n
            if bar is not None:
                bar.update(n)
        position = min(projector.checkpoints().values())
        old = reads.swap_in(staged, note)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            reads.discard(staged)
        if isinstance(exc, ProjectionError):
            raise _stopped(exc) from exc
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    reads.drop_replaced(old)
    return ReplayStats(
        projections=[p.name for p in chosen],
        events=count,
        seconds=round(seconds, 4),
        events_per_s=round(count / seconds, 1) if seconds > 0 else 0.0,
        position=position,
        cleanup_seconds=round(time.perf_counter() - started - seconds, 4),
    )


def _stopped(exc: ProjectionError) -> ProjectionError:
    """The replay's own sentence: what stopped it, that nothing changed, and the way on."""
    park = (f" If that event must not be projected, park it (labkit events park {exc.position} "
            "--reason '...') and replay again." if exc.position is not None else "")
    return ProjectionError(f"replay stopped: {exc}. Nothing was swapped in: the live read "
                           f"models are as they were.{park}", exc.position)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecommerce.projections.replay",
        description="Rebuild read models from the event log beside the live ones, then swap.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="replay every projection")
    group.add_argument("--projection", action="append", metavar="NAME",
                       help="replay this projection (repeatable)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from ecommerce import plugins
    from ecommerce.store.factory import open_event_store, open_read_store

    plugins.load_all()  # projections (and upcasters) added by plugins, as the processor does
    try:
        chosen = get_projections(None if args.all else args.projection)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    with open_event_store() as es, open_read_store() as rs:
        try:
            stats = replay(es, rs, chosen, progress=not args.no_progress)
        except ProjectionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(stats.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
