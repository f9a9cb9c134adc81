"""The event processor: `python -m ecommerce.projections.processor [--follow]`.

Without `--follow` it catches up once and exits (the Kubernetes CronJob, like the course's
event-processor, but doing real work). With `--follow` it keeps projecting (the Deployment):
woken by PostgreSQL's NOTIFY at each append, or backing off adaptively on SQLite
(`ecommerce.store.wakeup`), and serving /healthz and /readyz from its loop's heartbeat on
LABKIT_HOST:LABKIT_PORT (`ecommerce.health`).

When the event log is not the one the read model was built from (it was deleted and
re-created, restored, or wiped: `LogReplaced`), the processor does not stop: the log is the
truth and the model is derived from it, so it rebuilds the model from the new log beside the
old one and swaps it in (`ecommerce.projections.replay`). It says so in its log
(`"read model rebuilt"`, with the reason), and the read store keeps the reason, which
query-service's `/readyz` shows (and so `labkit status`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime

from ecommerce import logs, plugins
from ecommerce.health import STALE_AFTER, Heartbeat, serve_probes
from ecommerce.projections import get_projections
from ecommerce.projections.base import Projection
from ecommerce.projections.checkpoint_apart import DEFECT as CHECKPOINT_APART
from ecommerce.projections.checkpoint_apart import CheckpointApartProjector
from ecommerce.projections.projector import LogReplaced, ProjectionError, Projector
from ecommerce.projections.replay import replay
from ecommerce.signals import stop_on_signals
from ecommerce.store.base import EventStore, StoreUnavailableError
from ecommerce.store.read_base import ReadStore

#: A challenge's deliberate defect (`labkit challenge`); unset in every manifest.
DEFECT_ENV = "LABKIT_CHALLENGE_DEFECT"


def rebuild(events: EventStore, reads: ReadStore, projections: list[Projection],
            reason: LogReplaced, log: logging.Logger) -> None:
    """Rebuild the read model from the (new) log, beside the old one; log why and how."""
    log.warning("event log replaced: rebuilding the read model from it",
                extra={"fields": {"reason": str(reason)}})
    at = datetime.now(UTC).isoformat(timespec="seconds")
    stats = replay(events, reads, projections, progress=False,
                   note=f"rebuilt at {at} because {reason}")
    logs.event(log, "read model rebuilt", reason=str(reason), events=stats.events,
               position=stats.position, seconds=stats.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecommerce.projections.processor",
        description="Apply new events to the read models (projections).",
    )
    parser.add_argument("--follow", action="store_true", help="keep running and follow the log")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction")
    parser.add_argument("--poll", type=float, default=0.25,
                        help="follow: longest wait between polls at rest when the event store "
                             "cannot wake the processor (SQLite); PostgreSQL notifies it")
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER,
                        help="follow: /healthz fails after this many seconds without a loop turn")
    parser.add_argument("--projection", action="append", metavar="NAME")
    args = parser.parse_args(argv)
    log = logs.setup("event-processor")
    plugins.load_all(logger=log)  # projections (and upcasters) added by plugins
    from ecommerce.store.factory import open_event_store, open_read_store

    try:
        es, rs = open_event_store(), open_read_store()
    except StoreUnavailableError as exc:
        log.error(str(exc))
        return 2
    chosen = get_projections(args.projection)
    defect = os.environ.get(DEFECT_ENV, "")
    if defect == CHECKPOINT_APART:  # a challenge's deliberate bug: say so, loudly
        log.warning("CHALLENGE DEFECT active: the checkpoint is committed apart from the "
                    "writes", extra={"fields": {"defect": defect, "env": DEFECT_ENV}})
        projector: Projector = CheckpointApartProjector(
            es, rs, chosen, batch_size=args.batch, on_notice=lambda text: log.warning(text))
    else:
        projector = Projector(es, rs, chosen, batch_size=args.batch,
                              on_notice=lambda text: log.warning(text))

    def on_error(exc: Exception) -> None:
        if isinstance(exc, LogReplaced):
            try:
                rebuild(es, rs, chosen, exc, log)
            except Exception as failed:  # e.g. a store away: the next step finds out again
                log.error(f"could not rebuild the read model: {failed}")
        elif isinstance(exc, ProjectionError) and exc.position is not None:
            log.error(f"{exc}; retrying. If this event must not be projected, park it: "
                      f"`labkit events park {exc.position} --reason WHY`",
                      extra={"fields": {"position": exc.position}})
        else:
            log.error(str(exc))

    started = time.perf_counter()
    if not args.follow:
        try:
            n = projector.run_once()
        except LogReplaced as exc:
            rebuild(es, rs, chosen, exc, log)
            n = projector.run_once()
        logs.event(log, "caught up", events=n, checkpoints=projector.checkpoints(),
                   seconds=round(time.perf_counter() - started, 3))
        return 0
    stop = threading.Event()
    stop_on_signals(stop)
    heartbeat = Heartbeat("event-processor", stale_after=args.stale_after)
    probes = serve_probes(heartbeat)
    logs.event(log, "following", checkpoints=projector.checkpoints(),
               probes=probes.port if probes else None)
    try:
        projector.follow(stop, args.poll, on_error=on_error, heartbeat=heartbeat)
    finally:
        if probes is not None:
            probes.close()
    if isinstance(projector, CheckpointApartProjector):
        projector.save()
    logs.event(log, "stopped", checkpoints=projector.checkpoints())
    return 0


if __name__ == "__main__":
    sys.exit(main())
