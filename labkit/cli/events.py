"""`labkit events append | park | tail | stats` and `labkit replay`: the event store by hand."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from ecommerce.store.base import MAX_INT64
from labkit.cli.output import json_option, print_json

if TYPE_CHECKING:
    from ecommerce.store.base import EventStore

#: Global positions are 1-based 64-bit integers; "after" 0 is before the first event.
POSITION = click.IntRange(1, MAX_INT64)
AFTER = click.IntRange(0, MAX_INT64)
#: The most events one read returns: as the HTTP API's `limit` (ecommerce.services.app.Limit).
LIMIT = click.IntRange(1, 1000)


def open_store() -> EventStore:
    from ecommerce.store.factory import open_event_store

    return open_event_store()


@click.group()
def events() -> None:
    """Poke at the event store."""


@events.command()
@click.argument("stream")
@click.argument("event_type", metavar="TYPE")
@click.argument("data")
@click.option("--expected-version", default="any", show_default=True,
              help="'none' (the stream must not exist), 'any', or the stream's current version")
def append(stream: str, event_type: str, data: str, expected_version: str) -> None:
    """Append one event to STREAM (e.g. user-42): TYPE (e.g. UserCreated), DATA a JSON object."""
    from ecommerce.domain.events import NewEvent

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"DATA must be a JSON object ({exc}); e.g. '{{\"name\": \"Kim\"}}'",
                                 param_hint="DATA") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("DATA must be a JSON object, e.g. '{\"name\": \"Kim\"}'",
                                 param_hint="DATA")
    from ecommerce.domain.events import EventValidationError
    from ecommerce.store.base import parse_expected_version

    try:
        expected = parse_expected_version(expected_version)
    except EventValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--expected-version") from None
    with open_store() as store:
        result = store.append(stream, [NewEvent(event_type, payload)], expected)
    print_json({"stream_id": result.stream_id, "positions": list(result.positions),
                "version": result.version, "written": result.written})


@events.command()
@click.argument("position", type=POSITION)
@click.option("--reason", required=True, help="why it must not be projected (kept in the log)")
def park(position: int, reason: str) -> None:
    """Park the event at POSITION: the projector skips it when a projection fails on it.

    The log stays append-only: parking appends an `EventParked` record (stream
    parked-POSITION), so a replay makes the same decision.
    """
    from ecommerce.projections.parking import park as park_event

    with open_store() as store:
        print_json(park_event(store, position, reason, by="labkit events park"))


@events.command()
@click.option("--after", type=AFTER, default=None, help="start after this global position")
@click.option("--limit", type=LIMIT, default=20, show_default=True)
@click.option("--category", default=None, help="only streams starting with this, e.g. user-")
@click.option("--follow", "-f", is_flag=True, help="keep printing new events")
@json_option
def tail(after: int | None, limit: int, category: str | None, follow: bool, as_json: bool) -> None:
    """Print the newest events of the global log."""
    with open_store() as store:
        position = after if after is not None else max(0, store.last_position() - limit)
        while True:
            for e in store.read_all(position, limit, stream_prefix=category):
                if as_json:
                    print_json(e.as_dict())
                else:
                    click.echo(f"#{e.position:<6} {e.stream_id:<28} v{e.version:<3} {e.type:<24} "
                               f"{json.dumps(e.data, ensure_ascii=False)}")
                position = e.position
            if not follow:
                return
            time.sleep(0.2)  # a terminal follower: a human is watching, not a test


@events.command()
def stats() -> None:
    """Events, streams and counts per type."""
    with open_store() as store:
        print_json(store.stats())


@click.command()
@click.option("--projection", "projections", multiple=True, metavar="NAME",
              help="only this projection (repeatable; default all)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def replay(projections: tuple[str, ...], quiet: bool) -> None:
    """Rebuild the read models from the log beside the live ones, then swap them in."""
    from ecommerce.projections import get_projections
    from ecommerce.projections.replay import replay as run_replay
    from ecommerce.store.factory import open_read_store

    chosen = get_projections(list(projections) or None)
    with open_store() as es, open_read_store() as rs:
        result = run_replay(es, rs, chosen, progress=not quiet)
    print_json(result.as_dict())
