"""`labkit bench up` and `labkit bench commands`: the whole local system, measured.

Both start a fresh lab in a temporary data directory (never the student's), measure, and stop
it, so they can run next to a lab that is already up.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from ecommerce.config import Settings
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.runtime.local import LocalRuntime, drop_server_data


@contextlib.contextmanager
def temporary_lab(services: list[str] | None = None) -> Iterator[LocalRuntime]:
    """A lab of its own for a benchmark: a temporary data directory and, with the stores on
    servers (LABKIT_PG_URL / LABKIT_REDIS_URL), a PostgreSQL schema and a Redis prefix of its
    own, dropped afterwards, so the student's lab and data are never touched."""
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp:
        base = Settings.from_env()
        d = Path(tmp)
        tag = "bench_" + uuid.uuid4().hex[:10]
        settings = replace(base, data_dir=d, events_db=d / "events.db", read_db=d / "read.db",
                           pg_schema=tag, redis_prefix=tag)
        runtime = LocalRuntime(settings, services, gateway_port=0)  # never the student's 8080
        try:
            yield runtime
        finally:
            runtime.down()
            drop_server_data(settings)


def bench_up() -> dict[str, Any]:
    """Seconds from `up` to every service ready, and the resident memory of the system."""
    with temporary_lab() as rt:
        started = time.perf_counter()
        rt.up(progress=False)
        seconds = time.perf_counter() - started
        status = rt.status()
        rss = sum(s["rss_mb"] or 0 for s in status)
        return {"benchmark": "up", "services": len(status), "seconds_to_ready": round(seconds, 3),
                "rss_mb_total": round(rss, 1),
                "rss_mb": {s["service"]: s["rss_mb"] for s in status},
                "all_ready": all(s["status"] in ("ready", "running") for s in status)}


#: Iterations of `machine_speed`'s loop.
_SPEED_LOOP = 2_000_000


def machine_speed(repeat: int = 3) -> float:
    """Milliseconds one core of this machine takes for a fixed pure-Python loop (the best of
    `repeat`), measured before a benchmark: figures from different machines (or one machine on
    different days) compare only together with it."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        total = 0
        for i in range(_SPEED_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (q a whole number 0-100) of the values, interpolated linearly between
    the two closest ranks: `statistics.quantiles(method="inclusive")`, which is numpy's default
    (`numpy.percentile`). NaN for no values."""
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
        raise ValueError(f"q is a whole percentile from 0 to 100; got {q!r}")
    data = sorted(values)
    if not data:
        return float("nan")
    if q in (0, 100) or len(data) == 1:
        return float(data[0] if q == 0 else data[-1])
    return statistics.quantiles(data, n=100, method="inclusive")[q - 1]


def bench_commands(requests: int = 1000, concurrency: int = 8) -> dict[str, Any]:
    """Accepted create-user commands per second, and per command the time until the change is
    visible in query-service (projection lag), with the event processor following."""
    services = ["command-service", "query-service", "event-store-api", "event-processor"]
    with temporary_lab(services) as rt:
        rt.up(progress=False)
        cmd_url, query_url = rt.url("command-service"), rt.url("query-service")
        accepted: list[tuple[int, float]] = []  # (position, time accepted)
        seen: list[tuple[int, float]] = []  # (checkpoint, time first seen)
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[str] = []

        def watch() -> None:
            with httpx.Client(base_url=query_url, timeout=5) as client:
                last = -1
                while not stop.is_set():
                    cp = client.get("/api/queries/checkpoints").json()["checkpoints"]
                    pos = cp.get("users", {}).get("position", 0)
                    if pos != last:
                        seen.append((pos, time.perf_counter()))
                        last = pos
                    time.sleep(0.001)

        counter = iter(range(requests))

        def send() -> None:
            with httpx.Client(base_url=cmd_url, timeout=10) as client:
                for i in counter:
                    r = client.post("/api/commands/create-user",
                                    json={"name": f"Bench {i}", "email": f"bench{i}@example.com"})
                    if r.status_code != 202:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    with lock:
                        accepted.append((r.json()["position"], time.perf_counter()))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.perf_counter()
        workers = [threading.Thread(target=send) for _ in range(concurrency)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        head = max((p for p, _ in accepted), default=0)
        with contextlib.suppress(WaitTimeout):  # the lags measured so far are still figures
            wait_until(lambda: seen and seen[-1][0] >= head, timeout=30,
                       what="the read side to apply every accepted command")
        stop.set()
        watcher.join(5)
        lags = []
        for pos, at in accepted:
            visible = next((t for p, t in seen if p >= pos), None)
            if visible is not None:
                lags.append(max(0.0, visible - at) * 1000)
        return {
            "benchmark": "commands", "requests": requests, "concurrency": concurrency,
            "accepted": len(accepted), "errors": len(errors),
            "commands_per_s": round(len(accepted) / elapsed, 1),
            "lag_p50_ms": round(percentile(lags, 50), 2),
            "lag_p99_ms": round(percentile(lags, 99), 2),
            "lag_mean_ms": round(statistics.fmean(lags), 2) if lags else None,
            "visible": len(lags),
        }
