"""`labkit bench ...`: benchmarks that print figures; the last line is always one JSON object."""

from __future__ import annotations

import os

import click

from labkit.cli.output import json_option, print_result


@click.group()
def bench() -> None:
    """Benchmarks that print figures (the last line is JSON)."""


@bench.command()
@click.option("--backend", type=click.Choice(["sqlite", "postgres"]), default="sqlite",
              show_default=True)
@click.option("--events", type=int, default=5000, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--pg-url", default=None, help="default: LABKIT_PG_URL, else the local test server")
@json_option
def eventstore(backend: str, events: int, batch: int, pg_url: str | None, as_json: bool) -> None:
    """Append rate vs the eventsourcing library and raw SQL."""
    from labkit.bench.eventstore import run_eventstore_bench

    if backend == "postgres" and not pg_url:
        pg_url = os.environ.get("LABKIT_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    print_result(run_eventstore_bench(backend, events, batch, pg_url), as_json)


@bench.command()
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--target", type=click.Choice(["sqlite", "redis"]), default="sqlite",
              show_default=True)
@click.option("--redis-url", default=None)
@click.option("--repeat", type=int, default=3, show_default=True)
@json_option
def replay(events: int, target: str, redis_url: str | None, repeat: int, as_json: bool) -> None:
    """Replay rate vs a raw scan of the same rows."""
    from labkit.bench.replay import run_replay_bench

    print_result(run_replay_bench(events, target, redis_url, repeat), as_json)


@bench.command()
@json_option
def up(as_json: bool) -> None:
    """Seconds from `up` to every service ready, and memory."""
    from labkit.bench.system import bench_up

    print_result(bench_up(), as_json)


@bench.command()
@click.option("--requests", type=int, default=1000, show_default=True)
@click.option("--concurrency", type=int, default=8, show_default=True)
@json_option
def commands(requests: int, concurrency: int, as_json: bool) -> None:
    """CQRS command rate and command -> query lag."""
    from labkit.bench.system import bench_commands

    print_result(bench_commands(requests, concurrency), as_json)


@bench.command()
@click.option("--sagas", type=int, default=1000, show_default=True)
@click.option("--concurrency", type=int, default=8, show_default=True)
@json_option
def saga(sagas: int, concurrency: int, as_json: bool) -> None:
    """Order sagas per second and p50/p99 latency."""
    from labkit.bench.saga import bench_saga

    print_result(bench_saga(sagas, concurrency), as_json)


@bench.command()
@click.option("--seconds", type=float, default=20.0, show_default=True,
              help="how long to measure")
@click.option("--settle", type=float, default=3.0, show_default=True,
              help="seconds left alone before measuring")
@click.option("--running", is_flag=True,
              help="measure the lab that is up in LABKIT_DATA_DIR instead of a fresh one")
@json_option
def idle(seconds: float, settle: float, running: bool, as_json: bool) -> None:
    """CPU of a lab at rest, in % of one core, per process and in total."""
    from labkit.bench.idle import bench_idle

    print_result(bench_idle(seconds, settle, running), as_json)
