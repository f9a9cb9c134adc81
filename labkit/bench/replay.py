"""`labkit bench replay`: replay throughput against a raw scan of the same rows, and its memory.

The reference is the practical floor of any replay: `SELECT` every row of the log in position
order and JSON-decode its data and metadata, doing nothing else. Replay must also project,
fold and write the read model (beside the live one, then swap it in), so the target is a
ratio (>= 0.6), measured in the same run.

Each replay runs in a fresh child process (`python -m labkit.bench.replay --child ...`), so
`peak_rss_mb` is that process's peak resident memory (`ru_maxrss`): Python, the libraries and
whatever the replay held at its worst moment. Replay streams the log in batches, so the figure
stays the same whether the log holds 200k or 1M events.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
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
    count, rate, _ = scan_rates(db_path)
    return count, rate


def scan_rates(db_path: Path) -> tuple[int, float, float]:
    """(events, events per second of wall-clock, events per CPU second) of the raw scan."""
    conn = sqlite3.connect(db_path)
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        count = 0
        for row in conn.execute(
            "SELECT event_id, stream_id, version, position, type, schema_version, data, metadata, "
            "recorded_at FROM events ORDER BY position"
        ):
            json.loads(row[6])
            json.loads(row[7])
            count += 1
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        conn.close()
    return count, count / seconds, count / cpu if cpu > 0 else 0.0


def _replay_in_child(events_db: Path, target: str, location: str) -> dict[str, Any]:
    """One full replay in a fresh process; its stats and its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "labkit.bench.replay", "--child", str(events_db), target, location],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the replay process failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_replay(events_db: str, target: str, location: str) -> dict[str, Any]:
    """What the child process does: open the stores, replay everything, report."""
    import resource

    es = SqliteEventStore(events_db)
    reads: ReadStore
    if target == "sqlite":
        from ecommerce.store.sqlite_read import SqliteReadStore

        reads = SqliteReadStore(location)
    else:
        from ecommerce.store.redis_read import RedisReadStore

        url, _, prefix = location.rpartition("#")
        reads = RedisReadStore(url, prefix=prefix)
    cpu = time.process_time()
    try:
        stats = replay(es, reads, progress=False)
        cpu = time.process_time() - cpu
    finally:
        reads.close()
        es.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {**stats.as_dict(), "cpu_seconds": round(cpu, 4),
            "peak_rss_mb": round(peak_kb / 1024, 1)}


def run_replay_bench(events: int = 200_000, target: str = "sqlite",
                     redis_url: str | None = None, repeat: int = 3) -> dict[str, Any]:
    """Seed a fresh SQLite log, then time the raw scan and a full replay into `target`.

    Each rate is the best of `repeat` runs (scan and replay alternate, so both see the same
    machine load); `peak_rss_mb` is the highest peak of the replay processes. On a busy machine
    the wall-clock ratio moves with the load; `cpu_ratio_vs_scan` compares CPU time instead
    (the work each does), which a shared machine disturbs far less.
    """
    if target not in ("sqlite", "redis"):
        raise ValueError("target must be 'sqlite' or 'redis'")
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp:
        tmpdir = Path(tmp)
        es = SqliteEventStore(tmpdir / "events.db")
        seeded = seed_user_events(es, events)
        es.close()
        if target == "sqlite":
            location = str(tmpdir / "read.db")
        else:
            from ecommerce.store.redis_read import RedisReadStore

            prefix = "bench-" + uuid.uuid4().hex[:8]
            url = redis_url or "redis://127.0.0.1:6379/0"
            RedisReadStore(url, prefix=prefix).ping()
            location = f"{url}#{prefix}"
        best_scan = best_replay = peak = seconds = best_scan_cpu = best_replay_cpu = 0.0
        try:
            for _ in range(repeat):
                _, rate, cpu_rate = scan_rates(tmpdir / "events.db")
                best_scan, best_scan_cpu = max(best_scan, rate), max(best_scan_cpu, cpu_rate)
                stats = _replay_in_child(tmpdir / "events.db", target, location)
                if stats["events_per_s"] > best_replay:
                    best_replay, seconds = stats["events_per_s"], stats["seconds"]
                if stats["cpu_seconds"] > 0:
                    best_replay_cpu = max(best_replay_cpu, stats["events"] / stats["cpu_seconds"])
                peak = max(peak, stats["peak_rss_mb"])
        finally:
            if target == "redis":
                _drop_redis_prefix(location)
    return {
        "benchmark": "replay",
        "target": target,
        "events": seeded,
        "events_per_s": round(best_replay, 1),
        "seconds": seconds,
        "scan_events_per_s": round(best_scan, 1),
        "ratio_vs_scan": round(best_replay / best_scan, 3),
        "events_per_cpu_s": round(best_replay_cpu, 1),
        "scan_events_per_cpu_s": round(best_scan_cpu, 1),
        "cpu_ratio_vs_scan": round(best_replay_cpu / best_scan_cpu, 3) if best_scan_cpu else 0.0,
        "peak_rss_mb": peak,
        "repeat": repeat,
    }


def _drop_redis_prefix(location: str) -> None:
    import contextlib

    from ecommerce.store.redis_read import RedisReadStore

    url, _, prefix = location.rpartition("#")
    with contextlib.closing(RedisReadStore(url, prefix=prefix)) as reads:
        reads.erase()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child_replay(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        print(json.dumps(run_replay_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
