"""How fast does the labkit event store append, next to a peer library and to plain SQL?

One run measures these writers doing the same appends (same events, same batches, one batch
per transaction, same durability settings) on the same database engine:

- labkit: `SqliteEventStore` / `PostgresEventStore.append`, with expected-version and event-id
  checks;
- peer: the `eventsourcing` library's application recorder (`insert_events`), the layer of that
  library that corresponds to an event store append. Its optimistic concurrency is the
  (originator_id, originator_version) primary key; on PostgreSQL it locks the table so readers
  never skip notifications, the guarantee labkit's advisory lock gives. It gets the same JSON
  (data and metadata in one document) as its stored state;
- raw: a prepared INSERT of the same rows into a table of labkit's shape, then COMMIT, with no
  checks at all: what the table costs before any event-store logic;
- raw_autocommit (batch 1 only): the same INSERT sent on its own in autocommit mode, so it
  commits itself without a separate COMMIT: the least plain SQL can do per event (on
  PostgreSQL one round trip, like a labkit append).

Every writer starts from an empty table and first appends a short untimed warm-up; then they
take turns over several rounds, so background noise hits them alike. All of them JSON-encode
each event's data and metadata inside the timed loop. SQLite runs in WAL mode with the same
`synchronous` pragma for all (the peer's connections get it too; its default would be FULL);
PostgreSQL keeps the server's `synchronous_commit` for all. Everything is written to a temporary
folder or to throwaway schemas, removed afterwards.

Reading the results: on SQLite there is no network, so every writer pays about the same for the
commit and the differences are Python and index work. The peer's table is narrower there (no
event-id index, no AUTOINCREMENT counter), so it runs at or above `raw`, and a store that checks
ids and versions cannot be much faster than it. On PostgreSQL round trips dominate: labkit makes
one per append, the peer two plus a table lock and a NOTIFY, `raw` two (INSERT, COMMIT).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from ecommerce.domain.events import NewEvent

#: Events spread round-robin over this many streams (each append names its expected version).
STREAMS = 50
WARMUP_EVENTS = 200
#: The runners take turns over this many rounds.
ROUNDS = 10

Batch = tuple[str, int, list[NewEvent]]


def make_workload(events: int, batch: int, tag: str) -> list[Batch]:
    """(stream, expected version, events) per append; streams are written round-robin."""
    versions: dict[str, int] = {}
    work: list[Batch] = []
    for start in range(0, events, batch):
        stream = f"order-{tag}-{(start // batch) % STREAMS}"
        size = min(batch, events - start)
        batch_events = [
            NewEvent(
                "OrderPlaced",
                {"order_id": f"{stream}-{start + i}", "sku": "SKU-42", "quantity": i + 1,
                 "amount": 1999, "currency": "KRW"},
                {"correlation_id": str(uuid.uuid4()), "source": "bench"},
            )
            for i in range(size)
        ]
        work.append((stream, versions.get(stream, 0), batch_events))
        versions[stream] = versions.get(stream, 0) + size
    return work


def _encode(event: NewEvent) -> tuple[str, str]:
    return (json.dumps(dict(event.data), separators=(",", ":")),
            json.dumps(dict(event.metadata), separators=(",", ":")))


def _measure(
    runners: dict[str, Callable[[list[Batch]], None]], events: int, batch: int
) -> dict[str, float]:
    """Events/s per runner. The work is cut into rounds and the runners take turns, so a
    background hiccup (checkpoint, autovacuum, another process) hits them all alike."""
    for name, run in runners.items():
        run(make_workload(min(WARMUP_EVENTS, events), batch, name + "-warm"))
    works = {name: make_workload(events, batch, name) for name in runners}
    rounds = max(1, min(ROUNDS, len(next(iter(works.values())))))
    elapsed = dict.fromkeys(runners, 0.0)
    for r in range(rounds):
        for name, run in runners.items():
            work = works[name]
            chunk = work[r * len(work) // rounds:(r + 1) * len(work) // rounds]
            started = time.perf_counter()
            run(chunk)
            elapsed[name] += time.perf_counter() - started
    return {name: events / seconds for name, seconds in elapsed.items()}


# -- SQLite --------------------------------------------------------------------------------------


def _sqlite_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _labkit_runner(store: Any) -> tuple[Callable[[list[Batch]], None], Any]:
    """labkit's side, the same on both backends: one `append` per batch."""

    def run(work: list[Batch]) -> None:
        for stream, expected, evs in work:
            store.append(stream, evs, expected)

    return run, store.close


def _peer_runner(recorder: Any) -> Callable[[list[Batch]], None]:
    """The peer's side, the same on both backends: one `insert_events` per batch."""
    from eventsourcing.persistence import StoredEvent

    def run(work: list[Batch]) -> None:
        for stream, expected, evs in work:
            stored = []
            for offset, e in enumerate(evs, start=1):
                data, meta = _encode(e)
                state = ('{"data":' + data + ',"metadata":' + meta + "}").encode()
                stored.append(StoredEvent(stream, expected + offset, e.type, state))
            recorder.insert_events(stored)

    return run


def _sqlite_labkit(path: Path, synchronous: str) -> tuple[Callable[[list[Batch]], None], Any]:
    from ecommerce.store.sqlite_events import SqliteEventStore

    return _labkit_runner(SqliteEventStore(path, synchronous=synchronous))


def _sqlite_peer(path: Path, synchronous: str) -> tuple[Callable[[list[Batch]], None], Any]:
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(str(path), originator_id_type="text")
    pool = datastore.pool
    create = pool._create_connection

    def create_with_pragma() -> Any:  # same durability as labkit: WAL + our synchronous
        conn = create()
        conn._sqlite_conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    pool._create_connection = create_with_pragma  # type: ignore[method-assign]
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()

    return _peer_runner(recorder), datastore.close


_SQLITE_RAW_INSERT = (
    "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, "
    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _sqlite_raw(
    path: Path, synchronous: str, *, autocommit: bool = False
) -> tuple[Callable[[list[Batch]], None], Any]:
    """BEGIN, INSERT the batch, COMMIT; with `autocommit`, a lone INSERT commits itself."""
    from ecommerce.domain.events import iso_utc
    from ecommerce.store.sqlite_events import SCHEMA

    conn = _sqlite_connect(path, synchronous)
    conn.executescript(SCHEMA)

    def run(work: list[Batch]) -> None:
        for stream, expected, evs in work:
            now = iso_utc()
            rows = [(e.id, stream, expected + i, e.type, e.schema_version, *_encode(e), now)
                    for i, e in enumerate(evs, start=1)]
            if autocommit and len(rows) == 1:
                conn.execute(_SQLITE_RAW_INSERT, rows[0])
                continue
            conn.execute("BEGIN")
            conn.executemany(_SQLITE_RAW_INSERT, rows)
            conn.execute("COMMIT")

    return run, conn.close


def _bench_sqlite(events: int, batch: int, synchronous: str) -> dict[str, float]:
    factories: dict[str, Callable[[Path, str], tuple[Callable[[list[Batch]], None], Any]]] = {
        "labkit": _sqlite_labkit,
        "peer": _sqlite_peer,
        "raw": _sqlite_raw,
    }
    if batch == 1:
        factories["raw_autocommit"] = partial(_sqlite_raw, autocommit=True)
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp, ExitStack() as stack:
        runners = {}
        for name, factory in factories.items():
            run, close = factory(Path(tmp) / f"{name}.db", synchronous)
            stack.callback(close)
            runners[name] = run
        return _measure(runners, events, batch)


# -- PostgreSQL ----------------------------------------------------------------------------------


def _pg_labkit(url: str, schema: str) -> tuple[Callable[[list[Batch]], None], Any]:
    from ecommerce.store.postgres_events import PostgresEventStore

    return _labkit_runner(PostgresEventStore(url, schema=schema))


def _pg_peer(url: str, schema: str) -> tuple[Callable[[list[Batch]], None], Any]:
    import psycopg
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    params = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    datastore = PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", "5432")),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        schema=schema,
        originator_id_type="text",
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()

    return _peer_runner(recorder), datastore.close


def _pg_raw(
    url: str, schema: str, *, autocommit: bool = False
) -> tuple[Callable[[list[Batch]], None], Any]:
    """A prepared INSERT of the batch, then COMMIT. With `autocommit`, a one-event batch is a
    lone INSERT that commits itself: one round trip, the least plain SQL can do."""
    import psycopg

    from ecommerce.store.postgres_events import _TABLE_DDL

    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    conn.execute(_TABLE_DDL.format(schema=f'"{schema}"'))
    conn.autocommit = autocommit
    insert = (
        f'INSERT INTO "{schema}".events (event_id, stream_id, version, type, schema_version, '
        "data, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )

    def run(work: list[Batch]) -> None:
        with conn.cursor() as cur:
            for stream, expected, evs in work:
                rows = [(e.id, stream, expected + i, e.type, e.schema_version, *_encode(e))
                        for i, e in enumerate(evs, start=1)]
                if autocommit:
                    if len(rows) == 1:
                        cur.execute(insert, rows[0], prepare=True)
                    else:
                        with conn.transaction():
                            cur.executemany(insert, rows)
                    continue
                if len(rows) == 1:
                    cur.execute(insert, rows[0], prepare=True)
                else:
                    cur.executemany(insert, rows)
                conn.commit()

    return run, conn.close


def _bench_postgres(events: int, batch: int, url: str) -> dict[str, float]:
    import psycopg

    factories: dict[str, Callable[[str, str], tuple[Callable[[list[Batch]], None], Any]]] = {
        "labkit": _pg_labkit,
        "peer": _pg_peer,
        "raw": _pg_raw,
    }
    if batch == 1:
        factories["raw_autocommit"] = partial(_pg_raw, autocommit=True)
    base = "bench_" + uuid.uuid4().hex[:10]
    try:
        with ExitStack() as stack:
            runners = {}
            for name, factory in factories.items():
                run, close = factory(url, f"{base}_{name}")
                stack.callback(close)
                runners[name] = run
            return _measure(runners, events, batch)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in factories:
                conn.execute(f'DROP SCHEMA IF EXISTS "{base}_{name}" CASCADE')


# -- entry point ---------------------------------------------------------------------------------


@contextmanager
def _quiet_eventsourcing() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_eventstore_bench(
    backend: str,
    events: int,
    batch: int = 1,
    pg_url: str | None = None,
    *,
    synchronous: str | None = None,
) -> dict[str, Any]:
    """Append `events` events in batches of `batch` with labkit, the peer and raw SQL.

    `pg_url` defaults to LABKIT_PG_URL; `synchronous` (SQLite only) to
    LABKIT_SQLITE_SYNCHRONOUS. Returns a JSON-able dict of events/s and ratios.
    """
    from ecommerce.config import Settings

    if events < 1 or batch < 1:
        raise ValueError("events and batch must be >= 1")
    settings = Settings.from_env()
    with _quiet_eventsourcing():
        if backend == "sqlite":
            sync = (synchronous or settings.sqlite_synchronous).upper()
            results = _bench_sqlite(events, batch, sync)
            durability = f"WAL, synchronous={sync}"
        elif backend == "postgres":
            url = pg_url or settings.pg_url
            if not url:
                raise ValueError("PostgreSQL benchmark needs pg_url or LABKIT_PG_URL")
            results = _bench_postgres(events, batch, url)
            durability = "server default synchronous_commit"
        else:
            raise ValueError(f"backend must be 'sqlite' or 'postgres'; got {backend!r}")
    result: dict[str, Any] = {
        "backend": backend,
        "events": events,
        "batch": batch,
        "durability": durability,
        "events_per_s": round(results["labkit"], 1),
        "peer": "eventsourcing application recorder (insert_events)",
        "peer_events_per_s": round(results["peer"], 1),
        "raw_events_per_s": round(results["raw"], 1),
        "ratio_vs_peer": round(results["labkit"] / results["peer"], 2),
        "ratio_vs_raw": round(results["labkit"] / results["raw"], 2),
    }
    if "raw_autocommit" in results:
        result["raw_autocommit_events_per_s"] = round(results["raw_autocommit"], 1)
        result["ratio_vs_raw_autocommit"] = round(results["labkit"] / results["raw_autocommit"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default=None)
    args = parser.parse_args(argv)
    result = run_eventstore_bench(args.backend, args.events, args.batch, args.pg_url,
                                  synchronous=args.synchronous)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
