"""`labkit bench replay`: replay throughput against a raw scan of the same rows.

The reference is the practical floor of any replay: `SELECT` every row of the log in position
order and JSON-decode its data and metadata, doing nothing else. Replay must also project,
fold and write the read model, so the target is a ratio (>= 0.5), measured in the same run.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ecommerce.domain import users as u
from ecommerce.domain.events import NewEvent
from ecommerce.projections.replay import replay
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import ReadStore
from ecommerce.store.sqlite_events import SqliteEventStore


def seed_user_events(store: EventStore, events: int, seed: int = 7) -> int:
    """Append about `events` realistic user events: each user is created, updated a few
    times, and sometimes deactivated; one append (batch) per user. Returns the count."""
    rnd = random.Random(seed)
    written = 0
    n = 0
    while written < events:
        user_id = f"{n:07d}"
        n += 1
        user = u.User(user_id)
        batch: list[NewEvent] = [u.create(user, f"User {n}", f"user{n}@example.com")]
        for k in range(rnd.randint(0, 4)):
            batch.append(u.update(u.User(user_id, version=1), email=f"u{n}.{k}@example.com"))
        if rnd.random() < 0.25:
            batch.append(NewEvent(u.USER_DEACTIVATED, {"user_id": user_id, "reason": "bench"}))
        batch = batch[: events - written]
        store.append(u.stream_id(user_id), batch, "none")
        written += len(batch)
    return written


def scan_rate(db_path: Path) -> tuple[int, float]:
    """Events/s of a raw SELECT over the log plus JSON decode of data and metadata."""
    conn = sqlite3.connect(db_path)
    try:
        started = time.perf_counter()
        count = 0
        for row in conn.execute(
            "SELECT event_id, stream_id, version, position, type, schema_version, data, metadata, "
            "recorded_at FROM events ORDER BY position"
        ):
            json.loads(row[6])
            json.loads(row[7])
            count += 1
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return count, count / seconds


def run_replay_bench(events: int = 200_000, target: str = "sqlite",
                     redis_url: str | None = None, repeat: int = 3) -> dict[str, Any]:
    """Seed a fresh SQLite log, then time the raw scan and a full replay into `target`.

    Each figure is the best of `repeat` runs (scan and replay alternate, so both see the
    same machine load).
    """
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp:
        tmpdir = Path(tmp)
        es = SqliteEventStore(tmpdir / "events.db")
        seeded = seed_user_events(es, events)
        reads: ReadStore
        if target == "sqlite":
            from ecommerce.store.sqlite_read import SqliteReadStore

            reads = SqliteReadStore(tmpdir / "read.db")
        elif target == "redis":
            from ecommerce.store.redis_read import RedisReadStore

            reads = RedisReadStore(redis_url or "redis://127.0.0.1:6379/0",
                                   prefix="bench-" + uuid.uuid4().hex[:8])
            reads.ping()
        else:
            raise ValueError("target must be 'sqlite' or 'redis'")
        best_scan = best_replay = 0.0
        try:
            for _ in range(repeat):
                _, rate = scan_rate(es.path)
                best_scan = max(best_scan, rate)
                stats = replay(es, reads, progress=False)
                best_replay = max(best_replay, stats.events_per_s)
        finally:
            from ecommerce.projections import get_projections

            ps = get_projections()
            reads.reset([c for p in ps for c in p.collections], [p.name for p in ps])
            reads.close()
            es.close()
    return {
        "benchmark": "replay",
        "target": target,
        "events": seeded,
        "events_per_s": round(best_replay, 1),
        "scan_events_per_s": round(best_scan, 1),
        "ratio_vs_scan": round(best_replay / best_scan, 3),
        "repeat": repeat,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run_replay_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
