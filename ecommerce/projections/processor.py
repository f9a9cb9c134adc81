"""The event processor: `python -m ecommerce.projections.processor [--follow]`.

Without `--follow` it catches up once and exits (the Kubernetes CronJob, like the course's
event-processor, but doing real work). With `--follow` it keeps projecting (the Deployment).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from ecommerce import logs
from ecommerce.projections import get_projections
from ecommerce.projections.projector import Projector
from ecommerce.signals import stop_on_signals
from ecommerce.store.base import StoreUnavailableError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecommerce.projections.processor",
        description="Apply new events to the read models (projections).",
    )
    parser.add_argument("--follow", action="store_true", help="keep running and follow the log")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction")
    parser.add_argument("--poll", type=float, default=0.02, help="idle poll interval, seconds")
    parser.add_argument("--projection", action="append", metavar="NAME")
    args = parser.parse_args(argv)
    log = logs.setup("event-processor")
    from ecommerce.store.factory import open_event_store, open_read_store

    try:
        es, rs = open_event_store(), open_read_store()
    except StoreUnavailableError as exc:
        log.error(str(exc))
        return 2
    projector = Projector(es, rs, get_projections(args.projection), batch_size=args.batch)
    started = time.perf_counter()
    if not args.follow:
        n = projector.run_once()
        logs.event(log, "caught up", events=n, checkpoints=projector.checkpoints(),
                   seconds=round(time.perf_counter() - started, 3))
        return 0
    stop = threading.Event()
    stop_on_signals(stop)
    logs.event(log, "following", checkpoints=projector.checkpoints())
    projector.follow(stop, args.poll, on_error=lambda exc: log.error(str(exc)))
    logs.event(log, "stopped", checkpoints=projector.checkpoints())
    return 0


if __name__ == "__main__":
    sys.exit(main())
