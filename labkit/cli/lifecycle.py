"""`labkit up | status | env | down | reset | logs | kill | restart | rollback | doctor`."""

from __future__ import annotations

import contextlib
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
@click.option("--step", metavar="STEP",
              help="start only this step and the ones before it, as the course does: 00-base, "
                   "01-networking, 02-saga, 03-cqrs, 04-event-sourcing (or 02, saga, ...)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--faults/--no-faults", default=None,
              help="fault injection (/faults, crash_after) on or off for the failure scenarios; "
                   "default: as it runs now (a new lab: off, unless LABKIT_FAULTS=1)")
def up(step: str | None, quiet: bool, faults: bool | None) -> None:
    """Start every service (restart what is down) and wait until ready.

    Local mode also starts `gateway` on 127.0.0.1:8080 (LABKIT_GATEWAY_PORT), which routes
    like manifests/01-networking: the course's curl lines work against http://localhost:8080.
    """
    from labkit.runtime.steps import up_to

    lab = make_lab()
    started = time.perf_counter()
    lab.up(step, progress=not quiet, faults=faults)
    steps = up_to(step)
    rows = [r for r in lab.runtime.status() if r.get("step") in steps]
    if lab.mode == "local":
        rows = lab.local_runtime("labkit up").database_rows() + rows
        click.echo(table(rows, ["step", "service", "url", "pid", "status"]))
    else:
        click.echo(table(rows, ["step", "kind", "name", "state", "detail"]))
    what = f"steps up to {steps[-1]}" if step else "every step"
    click.echo(f"{what} ready in {time.perf_counter() - started:.1f}s ({lab.mode} mode)")
    if lab.mode == "local":
        with contextlib.suppress(Exception):
            click.echo(f"gateway: {lab.url('gateway')}  (try: curl -s "
                       f"{lab.url('gateway')}/api/queries/users; `labkit env` prints every URL)")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show each service: URL, pid, status."""
    rows = make_lab().runtime.status()
    if as_json:
        print_json(rows)
    else:
        click.echo(table(rows, ["step", "service", "url", "pid", "status", "rss_mb", "detail"]))


@click.command()
@click.option("--powershell", is_flag=True, help="PowerShell ($env:NAME = ...) instead of bash/zsh")
def env(powershell: bool) -> None:
    """Print the gateway's and services' URLs as shell variables.

    bash / zsh:  eval "$(labkit env)"     PowerShell:  labkit env --powershell | Invoke-Expression
    """
    from labkit.cli.shell import exports

    urls = make_lab().urls()
    if not urls:
        raise click.ClickException("nothing is running: start the lab with `labkit up`")
    click.echo(exports(urls, "powershell" if powershell else "sh"))


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
@click.option("--tail", type=click.IntRange(min=1), default=100, show_default=True,
              help="lines to show")
def logs(name: str, tail: int) -> None:
    """Show a service's recent log lines."""
    click.echo(make_lab().logs(name, tail=tail))


@click.command()
@click.argument("name")
def kill(name: str) -> None:
    """Kill a service's process (crash it on purpose)."""
    click.echo(f"killed {name}: {make_lab().kill(name)}")


@click.command()
@click.argument("name")
def restart(name: str) -> None:
    """Restart one process as deployed (like `kubectl rollout restart`), e.g. after editing
    the routes the gateway reads."""
    row = make_lab().restart(name).iloc[0].to_dict()
    click.echo(f"restarted {name}: pid {row.get('pid')}, {row.get('status')}")


@click.command()
@click.argument("name")
def rollback(name: str) -> None:
    """Undo a change deployed on top of the manifests for one process (`labkit status` shows
    it in DETAIL) and restart it as the manifests say (like `kubectl rollout undo`)."""
    row = make_lab().rollback(name).iloc[0].to_dict()
    click.echo(f"rolled back {name} to the manifests: pid {row.get('pid')}, {row.get('status')}")


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
