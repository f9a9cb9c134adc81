"""`labkit`: the command line for students and instructors. Every command has --help."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "-"))
                               for r in rows)) if rows else len(c) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c])
                               for c in columns))
    return "\n".join(lines)


def _lab():
    from labkit.lab import Lab

    return Lab()


# ---- lifecycle ---------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    lab = _lab()
    started = time.perf_counter()
    lab.runtime.up(wait=True, progress=not args.quiet)
    rows = lab.runtime.status()
    print(_table(rows, ["service", "url", "pid", "status"]))
    print(f"ready in {time.perf_counter() - started:.1f}s ({lab.mode} mode)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = _lab().runtime.status()
    if args.json:
        _print_json(rows)
    else:
        print(_table(rows, ["service", "url", "pid", "status", "rss_mb"]))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = _lab().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    lab = _lab()
    lab.reset()
    print(f"stopped everything and removed {lab.settings.data_dir}" if lab.mode == "local"
          else "removed everything the lab applied")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    print(_lab().logs(args.name, tail=args.tail))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from labkit.config import Settings
    from labkit.doctor import doctor

    lab = _lab()
    rows = doctor(Settings.from_env(), lab.runtime)
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            mark = {True: "ok", False: "FAIL", None: "?"}[r["ok"]]
            print(f"{mark:>4}  {r['check']:<18} {r['detail']}")
    return 0 if all(r["ok"] is not False for r in rows) else 1


def cmd_kill(args: argparse.Namespace) -> int:
    print(f"killed {args.name}: {_lab().kill(args.name)}")
    return 0


# ---- events --------------------------------------------------------------------------------------
def _store():
    from labkit.store.factory import open_event_store

    return open_event_store()


def cmd_events_append(args: argparse.Namespace) -> int:
    from labkit.domain.events import NewEvent

    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"error: DATA must be a JSON object ({exc}); e.g. '{{\"name\": \"Kim\"}}'",
              file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("error: DATA must be a JSON object, e.g. '{\"name\": \"Kim\"}'", file=sys.stderr)
        return 2
    with _store() as store:
        result = store.append(args.stream, [NewEvent(args.type, data)], args.expected_version)
    _print_json({"stream_id": result.stream_id, "positions": list(result.positions),
                 "version": result.version, "written": result.written})
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    with _store() as store:
        after = args.after if args.after is not None else max(0, store.last_position() - args.limit)
        while True:
            for e in store.read_all(after, args.limit, stream_prefix=args.category):
                if args.json:
                    _print_json(e.as_dict())
                else:
                    print(f"#{e.position:<6} {e.stream_id:<28} v{e.version:<3} {e.type:<24} "
                          f"{json.dumps(e.data, ensure_ascii=False)}")
                after = e.position
            if not args.follow:
                return 0
            time.sleep(0.2)


def cmd_events_stats(args: argparse.Namespace) -> int:
    with _store() as store:
        _print_json(store.stats())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from labkit.projections import get_projections
    from labkit.projections.replay import replay
    from labkit.store.factory import open_read_store

    try:
        chosen = get_projections(args.projection)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    with _store() as es, open_read_store() as rs:
        stats = replay(es, rs, chosen, progress=not args.quiet)
    _print_json(stats.as_dict())
    return 0


# ---- benchmarks ----------------------------------------------------------------------------------
def _bench_out(result: dict[str, Any], as_json: bool) -> int:
    if not as_json:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    _print_json(result)  # the last line is always the JSON object
    return 0


def cmd_bench_eventstore(args: argparse.Namespace) -> int:
    from labkit.bench_eventstore import run_eventstore_bench

    pg_url = args.pg_url
    if args.backend == "postgres" and not pg_url:
        import os

        pg_url = os.environ.get("LABKIT_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    return _bench_out(run_eventstore_bench(args.backend, args.events, args.batch, pg_url),
                      args.json)


def cmd_bench_replay(args: argparse.Namespace) -> int:
    from labkit.bench_replay import run_replay_bench

    return _bench_out(run_replay_bench(args.events, args.target, args.redis_url, args.repeat),
                      args.json)


def cmd_bench_up(args: argparse.Namespace) -> int:
    from labkit.bench_system import bench_up

    return _bench_out(bench_up(), args.json)


def cmd_bench_commands(args: argparse.Namespace) -> int:
    from labkit.bench_system import bench_commands

    return _bench_out(bench_commands(args.requests, args.concurrency), args.json)


# ---- figures and notebooks ---------------------------------------------------------------------
def cmd_plots_export(args: argparse.Namespace) -> int:
    from labkit.figures import export_all

    lab = _lab() if args.use_running else None
    written = export_all(args.dir, lab)
    for path in written:
        print(path)
    print(f"wrote {len(written)} figures to {args.dir}")
    return 0


def cmd_notebooks_reset(args: argparse.Namespace) -> int:
    from labkit.notebook_files import NotebookResetError, reset

    try:
        results = reset(args.names or None, dry_run=args.dry_run)
    except NotebookResetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [r.as_dict() for r in results]
    print(_table(rows, ["notebook", "action", "backup", "source"]))
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


def cmd_fire(args: argparse.Namespace) -> int:
    from labkit.saga.cli import format_view

    lab = _lab()
    sid = lab.fire(args.scenario)
    view = lab.saga.wait(sid, timeout=args.timeout)
    if args.json:
        _print_json(view)
    else:
        print(format_view(view))
    return 0


# ---- commands with their own parsers (`labkit saga --help`, `labkit chaos --help`) ----------------
def cmd_saga(args: argparse.Namespace) -> int:
    from labkit.saga.cli import main

    return main(args.rest)


def cmd_chaos(args: argparse.Namespace) -> int:
    from labkit.chaos import main

    return main(args.rest)


def cmd_bench_saga(args: argparse.Namespace) -> int:
    from labkit.bench_saga import main

    return main(args.rest)


# ---- cluster tooling -------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from labkit.validate import main

    return main(["--k8s-version", args.k8s_version])


def cmd_image(args: argparse.Namespace) -> int:
    from labkit.image import main

    argv = ["build", "--tag", args.tag] + (["--kind", args.kind] if args.kind else [])
    return main(argv + (["--dry-run"] if args.dry_run else []))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labkit",
        description="Run the advanced microservice patterns lab: Saga, CQRS, Event Sourcing. "
                    "Mode comes from LABKIT_MODE (local | cluster).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("up", cmd_up, "start every service (restart what is down) and wait until ready")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp = add("status", cmd_status, "show each service: URL, pid, status")
    sp.add_argument("--json", action="store_true")
    add("down", cmd_down, "stop exactly what the lab started (idempotent)")
    add("reset", cmd_reset, "down, then delete the lab's data directory")
    sp = add("logs", cmd_logs, "show a service's recent log lines")
    sp.add_argument("name")
    sp.add_argument("--tail", type=int, default=100)
    sp = add("doctor", cmd_doctor, "is this machine (and cluster) ready for the lab?")
    sp.add_argument("--json", action="store_true")
    sp = add("kill", cmd_kill, "kill a service's process (crash it on purpose)")
    sp.add_argument("name")

    ev = sub.add_parser("events", help="poke at the event store", description="poke at the event store")
    evs = ev.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    sp = add("append", cmd_events_append, "append one event to a stream", evs)
    sp.add_argument("stream", help="stream id, e.g. user-42")
    sp.add_argument("type", help="event type, e.g. UserCreated")
    sp.add_argument("data", help="event data as a JSON object")
    sp.add_argument("--expected-version", default="any",
                    help="'none' (stream must not exist), 'any' (default) or the current version")
    sp = add("tail", cmd_events_tail, "print the newest events of the global log", evs)
    sp.add_argument("--after", type=int, default=None, help="start after this position")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--category", default=None, help="only streams starting with this, e.g. user-")
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sp.add_argument("--json", action="store_true")
    add("stats", cmd_events_stats, "events, streams and counts per type", evs)

    sp = add("replay", cmd_replay, "drop read models and rebuild them from the log")
    sp.add_argument("--projection", action="append", metavar="NAME",
                    help="only this projection (repeatable; default all)")
    sp.add_argument("--quiet", action="store_true")

    bench = sub.add_parser("bench", help="benchmarks that print figures (JSON last)",
                           description="benchmarks that print figures; the last line is JSON")
    bs = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    sp = add("eventstore", cmd_bench_eventstore, "append rate vs the eventsourcing library and raw SQL", bs)
    sp.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    sp.add_argument("--events", type=int, default=5000)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--pg-url", default=None)
    sp.add_argument("--json", action="store_true")
    sp = add("replay", cmd_bench_replay, "replay rate vs a raw scan of the same rows", bs)
    sp.add_argument("--events", type=int, default=200_000)
    sp.add_argument("--target", choices=("sqlite", "redis"), default="sqlite")
    sp.add_argument("--redis-url", default=None)
    sp.add_argument("--repeat", type=int, default=3)
    sp.add_argument("--json", action="store_true")
    sp = bs.add_parser("saga", help="order sagas per second and p50/p99 latency "
                       "(--sagas N --concurrency C --json)", add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_bench_saga)
    sp = add("up", cmd_bench_up, "seconds from up to ready, and memory", bs)
    sp.add_argument("--json", action="store_true")
    sp = add("commands", cmd_bench_commands, "CQRS command rate and projection lag", bs)
    sp.add_argument("--requests", type=int, default=1000)
    sp.add_argument("--concurrency", type=int, default=8)
    sp.add_argument("--json", action="store_true")

    plots = sub.add_parser("plots", help="the notebooks' figures", description="the notebooks' figures")
    ps = plots.add_subparsers(dest="plots_command", required=True, metavar="ACTION")
    sp = add("export", cmd_plots_export, "make every notebook figure from a real lab and save PNGs", ps)
    sp.add_argument("dir", metavar="DIR", help="output directory (created if missing)")
    sp.add_argument("--use-running", action="store_true",
                    help="use the running lab (LABKIT_MODE) instead of a temporary local one")
    nbs = sub.add_parser("notebooks", help="the workbook's notebooks", description="the workbook's notebooks")
    ns = nbs.add_subparsers(dest="notebooks_command", required=True, metavar="ACTION")
    sp = add("reset", cmd_notebooks_reset,
             "restore pristine notebooks (backups of the replaced ones in notebooks/.backups/)", ns)
    sp.add_argument("names", nargs="*", metavar="NAME", help="e.g. 03-cqrs (default: all)")
    sp.add_argument("--dry-run", action="store_true", help="show what would change")

    from labkit.scenarios import SCENARIOS

    sp = add("fire", cmd_fire, "fire a saga scenario (customers and faults set up for you), "
                               "wait, and show how it ended")
    sp.add_argument("scenario", choices=SCENARIOS)
    sp.add_argument("--timeout", type=float, default=60.0)
    sp.add_argument("--json", action="store_true")
    for name, fn, help_ in (
        ("saga", cmd_saga, "order sagas: run --follow|--pending|--order-id, place, status, list, "
                           "timeline (labkit saga --help)"),
        ("chaos", cmd_chaos, "random faults against the real system, then the saga invariants "
                             "(--runs N --seed S --json)"),
    ):
        sp = sub.add_parser(name, help=help_, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
        sp.set_defaults(fn=fn)

    sp = add("validate", cmd_validate, "validate manifests: strict schemas + consistency checks")
    sp.add_argument("--k8s-version", default="1.33.0")
    img = sub.add_parser("image", help="the lab's container image", description="container image")
    ims = img.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    sp = add("build", cmd_image, "docker build (+ kind load docker-image with --kind)", ims)
    sp.add_argument("--kind", metavar="CLUSTER")
    sp.add_argument("--tag", default="labkit:0.1.0")
    sp.add_argument("--dry-run", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from labkit.domain.events import EventValidationError
    from labkit.lab import LabError
    from labkit.runtime.k8s_errors import ClusterError
    from labkit.runtime.local import RuntimeErrorWithHint
    from labkit.store.base import ConcurrencyError, DuplicateEventError, StoreUnavailableError

    argv = list(sys.argv[1:] if argv is None else argv)
    # These commands own their whole argument list (argparse's REMAINDER drops a leading --help).
    delegated = {("saga",): cmd_saga, ("chaos",): cmd_chaos, ("bench", "saga"): cmd_bench_saga}
    for prefix, fn in delegated.items():
        if tuple(argv[: len(prefix)]) == prefix:
            args = argparse.Namespace(fn=fn, rest=argv[len(prefix):])
            break
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (LabError, RuntimeErrorWithHint, StoreUnavailableError, EventValidationError,
            ConcurrencyError, DuplicateEventError, ClusterError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
