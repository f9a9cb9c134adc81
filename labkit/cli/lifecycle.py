"""`labkit up | status | down | reset | logs | kill | doctor`: the lab's lifecycle."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from labkit.cli.output import json_option, print_json, table

if TYPE_CHECKING:
    from labkit.lab import Lab


def make_lab() -> Lab:
    from labkit.lab import Lab

    return Lab()


@click.command()
@click.option("--quiet", is_flag=True, help="no progress bar")
def up(quiet: bool) -> None:
    """Start every service (restart what is down) and wait until ready."""
    lab = make_lab()
    started = time.perf_counter()
    lab.up(progress=not quiet)
    click.echo(table(lab.runtime.status(), ["service", "url", "pid", "status"]))
    click.echo(f"ready in {time.perf_counter() - started:.1f}s ({lab.mode} mode)")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show each service: URL, pid, status."""
    rows = make_lab().runtime.status()
    if as_json:
        print_json(rows)
    else:
        click.echo(table(rows, ["service", "url", "pid", "status", "rss_mb", "detail"]))


@click.command()
def down() -> None:
    """Stop exactly what the lab started (idempotent)."""
    stopped = make_lab().down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@click.command()
def reset() -> None:
    """Stop everything, then delete the lab's data directory."""
    lab = make_lab()
    lab.reset()
    click.echo(f"stopped everything and removed {lab.settings.data_dir}" if lab.mode == "local"
               else "removed everything the lab applied")


@click.command()
@click.argument("name")
@click.option("--tail", type=int, default=100, show_default=True, help="lines to show")
def logs(name: str, tail: int) -> None:
    """Show a service's recent log lines."""
    click.echo(make_lab().logs(name, tail=tail))


@click.command()
@click.argument("name")
def kill(name: str) -> None:
    """Kill a service's process (crash it on purpose)."""
    click.echo(f"killed {name}: {make_lab().kill(name)}")


@click.command()
@json_option
def doctor(as_json: bool) -> int:
    """Is this machine (and cluster) ready for the lab?"""
    from ecommerce.config import Settings
    from labkit.ops.doctor import doctor as run_doctor

    rows = run_doctor(Settings.from_env(), make_lab().runtime)
    if as_json:
        print_json(rows)
    else:
        for r in rows:
            mark = {True: "ok", False: "FAIL", None: "?"}[r["ok"]]
            click.echo(f"{mark:>4}  {r['check']:<18} {r['detail']}")
    return 0 if all(r["ok"] is not False for r in rows) else 1
