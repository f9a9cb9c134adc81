"""`labkit challenge list | start NAME | hint | check | give-up | status`: challenge mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from labkit.cli.lifecycle import make_lab
from labkit.cli.output import json_option, print_json, table

if TYPE_CHECKING:
    from labkit.lab.challenges import ChallengeClient


def _client() -> ChallengeClient:
    from labkit.lab.challenges import ChallengeClient

    return ChallengeClient(make_lab())


@click.group()
def challenge() -> None:
    """Challenge mode: the lab breaks, you diagnose it with the lab's tools and fix it."""


@challenge.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every challenge, and which one is active."""
    rows = _client().challenges()
    if as_json:
        print_json(rows)
    else:
        click.echo(table(rows, ["name", "topic", "status", "title"]))


@challenge.command()
@click.argument("name")
def start(name: str) -> None:
    """Start challenge NAME: it breaks the running lab and tells you the symptoms."""
    click.echo(_client().start(name))


@challenge.command()
def hint() -> None:
    """The next hint (one more each time; the last one is the fix)."""
    click.echo(_client().hint())


@challenge.command()
@json_option
def check(as_json: bool) -> int:
    """Probe the lab: is it fixed? Exit 0 when it is, 1 when not yet."""
    result = _client().check()
    if as_json:
        print_json(result.as_dict())
    else:
        click.echo(str(result))
    return 0 if result.ok else 1


@challenge.command("give-up")
def give_up() -> None:
    """Repair the lab the model answer's way and end the challenge."""
    click.echo(_client().give_up())


@challenge.command()
@json_option
def status(as_json: bool) -> None:
    """The active challenge, its story and how many hints were shown."""
    client = _client()
    state = client.status()
    if as_json:
        print_json(state)
    elif state["active"] is None:
        click.echo("no challenge is active (`labkit challenge list`)")
    else:
        click.echo(client.briefing())
        click.echo(f"\nhints shown: {state.get('hints_shown', 0)}, checks: "
                   f"{state.get('checks', 0)}, solved: {state.get('solved_at') or 'not yet'}")
