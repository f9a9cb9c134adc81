"""`labkit saga place|status|list|retry|timeline|run`, `labkit fire SCENARIO`, `labkit chaos`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ecommerce.domain import saga as s
from ecommerce.domain.saga_view import format_view
from labkit.cli.lifecycle import make_lab
from labkit.cli.output import json_option, print_json, table

if TYPE_CHECKING:
    from labkit.lab.saga_client import SagaClient


def _client() -> SagaClient:
    from labkit.lab.saga_client import SagaClient

    return SagaClient(make_lab())


class OrderLine(click.ParamType):
    """SKU:QUANTITY[:PRICE_CENTS] -> (sku, quantity[, price])."""

    name = "SKU:QTY[:PRICE]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
            self.fail(f"a line is SKU:QUANTITY[:PRICE_CENTS]; got {value!r}", param, ctx)
        return (parts[0], *(int(p) for p in parts[1:]))


def _show_view(view: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(view, default=str) if as_json else format_view(view))


@click.group()
def saga() -> None:
    """Order sagas: place, status, list, timeline; run the orchestrator by hand."""


@saga.command()
@click.option("--user", required=True, help="customer (user id or name)")
@click.option("--line", "lines", multiple=True, required=True, type=OrderLine(),
              help="repeatable; price in cents")
@click.option("--order-id", default=None)
@click.option("--crash-after", metavar="STEP:EVENT",
              help="fault injection: the orchestrator kills itself after this event")
@click.option("--wait", is_flag=True, help="wait until the saga ends")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@json_option
def place(user: str, lines: tuple[tuple[Any, ...], ...], order_id: str | None,
          crash_after: str | None, wait: bool, timeout: float, as_json: bool) -> int:
    """Place an order: start its saga (the orchestrator drives it)."""
    from labkit.lab.saga_client import SagaStuckError, SagaTimeout

    client = _client()
    try:
        sid = client.place_order(user, list(lines), order_id=order_id, crash_after=crash_after)
    except s.SagaRuleError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    if not wait:
        print_json({"saga_id": sid, "status": "started"})
        return 0
    try:
        view = client.wait(sid, timeout=timeout)
    except (SagaTimeout, SagaStuckError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    _show_view(view, as_json)
    return 0


@saga.command()
@click.argument("saga_or_order_id", metavar="ID")
@json_option
def status(saga_or_order_id: str, as_json: bool) -> int:
    """One saga's view (by saga id or order id)."""
    try:
        view = _client().status(saga_or_order_id)
    except KeyError as exc:
        return _no_such_saga(exc)
    _show_view(view, as_json)
    return 0


def _no_such_saga(exc: KeyError) -> int:
    click.echo(f"error: {exc.args[0]}", err=True)
    return 2


@saga.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--status", "status_", type=click.Choice(["running", "compensating", "stuck",
                                                        *s.TERMINAL_STATUSES]))
@json_option
def list_sagas(limit: int, status_: str | None, as_json: bool) -> None:
    """Sagas, newest first (a stuck saga shows the error the orchestrator gave up on)."""
    rows = _client().summaries(limit=limit, status=status_)
    if as_json:
        print_json(rows)
    else:
        shown = [{**r, "failure": f"stuck: {r['stuck_error']}"} if r.get("stuck_error") else r
                 for r in rows]
        click.echo(table(shown, ["saga_id", "order_id", "user_id", "status", "amount", "failure",
                                 "duration_ms"]))


@saga.command()
@click.argument("saga_id", metavar="ID")
@json_option
def retry(saga_id: str, as_json: bool) -> int:
    """Drive a stuck saga again (after fixing what made the orchestrator give up on it)."""
    try:
        view = _client().retry(saga_id)
    except s.SagaRuleError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    _show_view(view, as_json)
    return 0


@saga.command()
@click.argument("ids", nargs=-1, metavar="ID...")
@json_option
def timeline(ids: tuple[str, ...], as_json: bool) -> int:
    """Every attempt of every step, with times (ms from the first event)."""
    client = _client()
    try:
        for sid in ids:
            client.require(sid)
    except KeyError as exc:
        return _no_such_saga(exc)
    df = client.timeline(list(ids) or None)
    if as_json:
        click.echo(df.to_json(orient="records", date_format="iso"))
        return 0
    if df.empty:
        click.echo("no saga events")
        return 0
    t0 = df["start"].min()
    df = df.assign(start_ms=((df["start"] - t0).dt.total_seconds() * 1000).round(1),
                   end_ms=((df["end"] - t0).dt.total_seconds() * 1000).round(1))
    click.echo(df[["saga", "step", "kind", "attempt", "outcome", "start_ms", "end_ms"]]
               .to_string(index=False))
    return 0


@saga.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> int:
    """Run the orchestrator here: --follow | --pending | --order-id ID (see `python -m
    ecommerce.saga run --help`)."""
    from ecommerce.saga.runner import main as runner_main

    return runner_main(["run", *args])


def _scenario_names() -> list[str]:
    from labkit.lab.scenarios import SCENARIOS

    return list(SCENARIOS)


@click.command()
@click.argument("scenario", type=click.Choice(_scenario_names()))
@click.option("--timeout", type=float, default=60.0, show_default=True)
@json_option
def fire(scenario: str, timeout: float, as_json: bool) -> None:
    """Fire a saga scenario (customers and faults set up for you), wait, show how it ended."""
    lab = make_lab()
    sid = lab.fire(scenario)
    _show_view(lab.saga.wait(sid, timeout=timeout), as_json)


@click.command()
@click.option("--runs", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--concurrency", type=int, default=4, show_default=True)
@click.option("--round-size", type=int, default=100, show_default=True)
@click.option("--participant-crashes/--no-participant-crashes", default=True, show_default=True,
              help="also crash participant processes")
@click.option("--json", "as_json", is_flag=True, help="only the JSON line")
def chaos(runs: int, seed: int, concurrency: int, round_size: int, participant_crashes: bool,
          as_json: bool) -> int:
    """Random faults against the real system, then the saga invariants."""
    from labkit.bench.chaos import run_chaos

    result = run_chaos(runs, seed, concurrency=concurrency, round_size=round_size,
                       participant_crashes=participant_crashes, progress=not as_json)
    if not as_json:
        for k in ("violation_details", "stuck_sagas", "errors"):
            for line in result[k]:
                click.echo(f"{k}: {line}")
    print_json(result)
    return 0 if result["violations"] == 0 and result["stuck"] == 0 else 1
