"""`python -m labkit.saga ...`: the orchestrator's entrypoint, plus place/status/list/timeline.

    run --follow          keep running: resume unfinished sagas, then drive each new one
                          (the Deployment; the local lab's `saga-orchestrator` process)
    run --pending         drive every saga that is not terminal yet, then exit
                          (the Kubernetes Job: with backoffLimit, a killed pod is replaced and
                          the new one resumes every saga where the old one stopped)
    run --order-id ID     drive the saga of one order (or saga id) to its end, print its view
    place --user U --line SKU:QTY[:PRICE_CENTS] ... [--wait]
    status ID | list | timeline ID...

Exit codes: 0 done; 1 a saga did not end (stopped, or wait timed out); 2 bad usage or the
event store is unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

from labkit.domain import saga as s
from labkit.domain.saga_view import describe


def _policy(args: argparse.Namespace) -> s.RetryPolicy:
    return s.RetryPolicy(initial_backoff=args.initial_backoff, max_backoff=args.max_backoff,
                         step_deadline=args.step_deadline, request_timeout=args.request_timeout)


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def format_view(view: dict[str, Any]) -> str:
    """A saga view as a few human lines (the CLI's `status`)."""
    out = [f"saga {view['saga_id']}  order {view.get('order_id')}  user {view.get('user_id')}  "
           f"amount {view.get('amount')}  -> {str(view.get('status')).upper()}"
           + (f"  ({view['failure']} at {view['failed_step']})" if view.get("failure") else "")]
    for name in [*view.get("actions", []), *view.get("compensations", [])]:
        p = view[name]
        if p["status"] == "pending":
            continue
        ms = f"{p['duration_ms']:.1f} ms" if p.get("duration_ms") is not None else "..."
        err = f"  last error: {p['error']}" if p.get("error") else ""
        out.append(f"  {p['kind']:<12} {name:<15} {p['status']:<10} attempts {p['attempts']}"
                   f"  {ms}{err}")
    if view.get("duration_ms") is not None:
        out.append(f"  total {view['duration_ms']:.1f} ms")
    return "\n".join(out)


def _store():
    from labkit.store.factory import open_event_store

    return open_event_store()


def cmd_run(args: argparse.Namespace) -> int:
    from labkit import logs
    from labkit.saga.orchestrator import Orchestrator, find_saga
    from labkit.saga.participants import HttpParticipants, participant_urls
    from labkit.signals import stop_on_signals
    from labkit.store.base import StoreUnavailableError

    log = logs.setup("saga-orchestrator")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is noise here
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
            logs.event(log, "following the log", owner=orch.owner, participants=participants.urls)
            orch.follow(stop, poll=args.poll)
            logs.event(log, "stopped", active=orch.active())
            return 0
        if args.pending:
            states = orch.run_pending(stop)
            counts: dict[str, int] = {}
            for st in states:
                counts[st.status] = counts.get(st.status, 0) + 1
            unfinished = sum(1 for st in states if not st.terminal)
            _print({"resumed": len(states), "by_status": counts, "unfinished": unfinished,
                    "seconds": round(time.perf_counter() - started, 3)})
            return 1 if unfinished else 0
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


def _client():
    from labkit.lab import Lab
    from labkit.saga.client import SagaClient

    return SagaClient(Lab())


def _parse_line(text: str) -> tuple[Any, ...]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"a line is SKU:QUANTITY[:PRICE_CENTS]; got {text!r}")
    return (parts[0], *(int(p) for p in parts[1:]))


def cmd_place(args: argparse.Namespace) -> int:
    client = _client()
    try:
        sid = client.place_order(args.user, args.line, order_id=args.order_id,
                                 crash_after=args.crash_after)
    except s.SagaRuleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.wait:
        _print({"saga_id": sid, "status": "started"})
        return 0
    from labkit.saga.client import SagaTimeout

    try:
        view = client.wait(sid, timeout=args.timeout)
    except SagaTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(view, default=str) if args.json else format_view(view))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        view = _client().status(args.id)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(json.dumps(view, default=str) if args.json else format_view(view))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = _client().list(limit=args.limit, status=args.status)
    if args.json:
        _print(rows)
        return 0
    cols = ["saga_id", "order_id", "user_id", "status", "amount", "failure", "duration_ms"]
    widths = {c: max([len(c)] + [len(str(r.get(c) or "-")) for r in rows]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c) if r.get(c) not in (None, "") else "-").ljust(widths[c])
                        for c in cols))
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    df = _client().timeline(args.ids or None)
    if args.json:
        print(df.to_json(orient="records", date_format="iso"))
        return 0
    if df.empty:
        print("no saga events")
        return 0
    t0 = df["start"].min()
    df = df.assign(start_ms=((df["start"] - t0).dt.total_seconds() * 1000).round(1),
                   end_ms=((df["end"] - t0).dt.total_seconds() * 1000).round(1))
    print(df[["saga", "step", "kind", "attempt", "outcome", "start_ms", "end_ms"]]
          .to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit.saga",
                                     description="The order saga: orchestrator and tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the orchestrator")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--follow", action="store_true", help="keep running (Deployment)")
    which.add_argument("--pending", action="store_true",
                       help="finish every unfinished saga, then exit (Job)")
    which.add_argument("--order-id", metavar="ID", help="run one order's saga (order or saga id)")
    run.add_argument("--workers", type=int, default=16, help="sagas driven at once")
    run.add_argument("--poll", type=float, default=0.005, help="follow: idle poll seconds")
    d = s.RetryPolicy()
    run.add_argument("--initial-backoff", type=float, default=d.initial_backoff)
    run.add_argument("--max-backoff", type=float, default=d.max_backoff)
    run.add_argument("--step-deadline", type=float, default=d.step_deadline)
    run.add_argument("--request-timeout", type=float, default=d.request_timeout)
    run.set_defaults(fn=cmd_run)

    place = sub.add_parser("place", help="place an order (start a saga)")
    place.add_argument("--user", required=True)
    place.add_argument("--line", action="append", required=True, type=_parse_line,
                       metavar="SKU:QTY[:PRICE]", help="repeatable; price in cents")
    place.add_argument("--order-id")
    place.add_argument("--crash-after", metavar="STEP:EVENT",
                       help="fault injection: the orchestrator kills itself after this event")
    place.add_argument("--wait", action="store_true", help="wait until the saga ends")
    place.add_argument("--timeout", type=float, default=30.0)
    place.add_argument("--json", action="store_true")
    place.set_defaults(fn=cmd_place)

    st = sub.add_parser("status", help="one saga's view")
    st.add_argument("id")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    ls = sub.add_parser("list", help="sagas, newest first")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--status", choices=["running", "compensating", *s.TERMINAL_STATUSES])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)

    tl = sub.add_parser("timeline", help="every attempt of every step, with times")
    tl.add_argument("ids", nargs="*", metavar="ID")
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(fn=cmd_timeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
