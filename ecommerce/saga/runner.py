"""`python -m ecommerce.saga run ...`: the orchestrator's container entrypoint.

    run --follow          keep running: resume unfinished sagas, then drive each new one
                          (the Deployment; the local lab's `saga-orchestrator` process).
                          Serves /healthz and /readyz on LABKIT_HOST:LABKIT_PORT when
                          LABKIT_PORT is set (`ecommerce.health`): the Deployment's probes
    run --pending         drive every saga that is not terminal yet, then exit
                          (the Kubernetes Job: with backoffLimit, a killed pod is replaced and
                          the new one resumes every saga where the old one stopped)
    run --order-id ID     drive the saga of one order (or saga id) to its end, print its view

Placing orders and reading sagas back are the workbook's job (`labkit saga place|status|list|
timeline`, `lab.saga`); this module is only what the image runs.

Exit codes: 0 done; 1 a saga did not end (stopped, or recorded as stuck: see
`labkit saga list`); 2 bad usage or the event store is unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from typing import Any

from ecommerce.domain import saga as s
from ecommerce.domain.saga_view import describe
from ecommerce.health import STALE_AFTER


def _policy(args: argparse.Namespace) -> s.RetryPolicy:
    return s.RetryPolicy(initial_backoff=args.initial_backoff, max_backoff=args.max_backoff,
                         step_deadline=args.step_deadline, request_timeout=args.request_timeout)


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _store():
    from ecommerce.store.factory import open_event_store

    return open_event_store()


def cmd_run(args: argparse.Namespace) -> int:
    from ecommerce import logs, plugins
    from ecommerce.health import Heartbeat, serve_probes
    from ecommerce.saga.orchestrator import Orchestrator, find_saga
    from ecommerce.saga.participants import HttpParticipants, participant_urls
    from ecommerce.signals import stop_on_signals
    from ecommerce.store.base import StoreUnavailableError

    log = logs.setup("saga-orchestrator")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is noise here
    plugins.load_all(logger=log)  # saga steps added by plugins (their request builders)
    try:
        store = _store()
    except StoreUnavailableError as exc:
        log.error(str(exc))
        return 2
    policy = _policy(args)
    participants = HttpParticipants(participant_urls(), timeout=policy.request_timeout)
    orch = Orchestrator(store, participants, policy=policy, workers=args.workers)
    stop = threading.Event()
    stop_on_signals(stop)
    started = time.perf_counter()
    try:
        if args.follow:
            heartbeat = Heartbeat("saga-orchestrator", stale_after=args.stale_after)
            probes = serve_probes(heartbeat)
            logs.event(log, "following the log", owner=orch.owner, participants=participants.urls,
                       probes=probes.port if probes else None)
            try:
                orch.follow(stop, poll=args.poll, heartbeat=heartbeat)
            finally:
                if probes is not None:
                    probes.close()
            logs.event(log, "stopped", active=orch.active())
            return 0
        if args.pending:
            states = orch.run_pending(stop)
            counts: dict[str, int] = {}
            for st in states:
                counts[st.status] = counts.get(st.status, 0) + 1
            stuck = sum(1 for st in states if st.status == "stuck")
            unfinished = sum(1 for st in states if not st.terminal) - stuck
            _print({"resumed": len(states), "by_status": counts, "unfinished": unfinished,
                    "stuck": stuck, "seconds": round(time.perf_counter() - started, 3)})
            return 1 if unfinished or stuck else 0
        sid = find_saga(store, args.order_id)
        if sid is None:
            log.error(f"no saga with saga id or order id {args.order_id!r}")
            return 2
        state = orch.run(sid, stop)
        _print(describe(state))
        return 0 if state.terminal else 1
    finally:
        orch.close(wait=False)
        participants.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ecommerce.saga",
                                     description="The order saga's orchestrator.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the orchestrator")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--follow", action="store_true", help="keep running (Deployment)")
    which.add_argument("--pending", action="store_true",
                       help="finish every unfinished saga, then exit (Job)")
    which.add_argument("--order-id", metavar="ID", help="run one order's saga (order or saga id)")
    run.add_argument("--workers", type=int, default=16, help="sagas driven at once")
    run.add_argument("--poll", type=float, default=0.25,
                     help="follow: longest wait between polls at rest when the event store "
                          "cannot wake the follower (SQLite); PostgreSQL notifies it")
    run.add_argument("--stale-after", type=float, default=STALE_AFTER,
                     help="follow: /healthz fails after this many seconds without a loop turn")
    d = s.RetryPolicy()
    run.add_argument("--initial-backoff", type=float, default=d.initial_backoff)
    run.add_argument("--max-backoff", type=float, default=d.max_backoff)
    run.add_argument("--step-deadline", type=float, default=d.step_deadline)
    run.add_argument("--request-timeout", type=float, default=d.request_timeout)
    run.set_defaults(fn=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
