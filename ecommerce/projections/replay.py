"""Replay: drop projections' read models and checkpoints, then rebuild them from position 0.

`python -m ecommerce.projections.replay --all` is the Kubernetes replay Job's entrypoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ecommerce.projections import get_projections
from ecommerce.projections.base import Projection
from ecommerce.projections.projector import Projector
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import ReadStore

REPLAY_BATCH = 10000


@dataclass(frozen=True)
class ReplayStats:
    projections: list[str]
    events: int
    seconds: float
    events_per_s: float
    position: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def replay(
    events: EventStore,
    reads: ReadStore,
    projections: Sequence[Projection] | None = None,
    *,
    progress: bool = True,
    batch_size: int = REPLAY_BATCH,
) -> ReplayStats:
    """Rebuild the projections (all by default) from the whole log; return throughput."""
    chosen = list(projections) if projections else get_projections()
    collections = [c for p in chosen for c in p.collections]
    reads.reset(collections, [p.name for p in chosen])
    projector = Projector(events, reads, chosen, batch_size=batch_size)
    head = events.last_position()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=head, unit="pos", desc="replay", unit_scale=True, leave=True)
    started = time.perf_counter()
    last = 0
    try:
        while projector.step():
            if bar is not None:
                reached = min(projector.checkpoints().values())
                bar.update(max(0, reached - last))
                last = reached
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    position = min(projector.checkpoints().values())
    # Every event up to `position` was rebuilt, by this replay or, if one runs alongside, by a
    # following projector (each batch is committed by exactly one of them).
    count = events.count_events(0, position)
    return ReplayStats(
        projections=[p.name for p in chosen],
        events=count,
        seconds=round(seconds, 4),
        events_per_s=round(count / seconds, 1) if seconds > 0 else 0.0,
        position=position,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecommerce.projections.replay",
        description="Drop read models and rebuild them from the event log.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="replay every projection")
    group.add_argument("--projection", action="append", metavar="NAME",
                       help="replay this projection (repeatable)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from ecommerce.store.factory import open_event_store, open_read_store

    try:
        chosen = get_projections(None if args.all else args.projection)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    with open_event_store() as es, open_read_store() as rs:
        stats = replay(es, rs, chosen, progress=not args.no_progress)
    print(json.dumps(stats.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
