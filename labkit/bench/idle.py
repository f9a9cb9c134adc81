"""`labkit bench idle`: what a local lab costs at rest, in percent of one CPU core.

Every process of the lab (services, followers, gateway) is sampled twice, `seconds` apart
(20 s by default), after the lab has been left alone for `settle` seconds; the figure is the
CPU time it used in between (user + system) over the wall time, per process and in total.
100 means one core fully busy. With `LABKIT_PG_URL` set, the PostgreSQL backends serving the
lab's own connections are measured too (`database`), since a polling follower costs the server
as much as itself; Redis is one shared server process and is not attributed.

CPU times come from psutil when it is installed, else from `/proc/<pid>/stat` (Linux).

By default a fresh lab is started in a temporary data directory and stopped afterwards;
`running=True` measures the lab that is up in the current data directory instead.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from labkit.runtime.local import LocalRuntime, RuntimeErrorWithHint

#: Target from the course's issue: a whole local lab at rest below 1% of one core.
TARGET_PERCENT = 1.0


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far; None if it is gone."""
    try:
        import psutil
    except ImportError:
        return _proc_stat_seconds(pid)
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return t.user + t.system


def _proc_stat_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields after its closing parenthesis.
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _database_backends(rt: LocalRuntime, pids: dict[str, int]) -> dict[str, int]:
    """PostgreSQL backend pids serving the lab's processes (by client port), named after them."""
    url = rt.settings.pg_url
    if not url:
        return {}
    import psutil
    import psycopg

    port_of: dict[int, str] = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.raddr and c.laddr:
                    port_of[c.laddr.port] = name
    if not port_of:
        return {}
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pid, client_port FROM pg_stat_activity "
                            "WHERE client_port = ANY(%s)", (list(port_of),)).fetchall()
    out: dict[str, int] = {}
    for n, (backend, port) in enumerate(sorted(rows)):
        out[f"postgres for {port_of[port]} #{n}"] = int(backend)
    return out


def _sample(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def measure(rt: LocalRuntime, seconds: float = 20.0) -> dict[str, Any]:
    """Sample the running lab `rt` over `seconds`; the figures (see the module docstring)."""
    pids = {r["service"]: r["pid"] for r in rt.status() if r.get("pid")}
    if not pids:
        raise RuntimeErrorWithHint("no lab process is running here: start one with `labkit up`, or "
                           "run `labkit bench idle` without --running to measure a fresh lab")
    backends = _database_backends(rt, pids)
    before, db_before = _sample(pids), _sample(backends)
    started = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - started
    after, db_after = _sample(pids), _sample(backends)

    def percent(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(100 * (b - a) / wall, 3)

    per = {n: percent(before[n], after[n]) for n in pids}
    db = {n: percent(db_before[n], db_after[n]) for n in backends}
    total = round(sum(v for v in per.values() if v is not None), 3)
    db_total = round(sum(v for v in db.values() if v is not None), 3)
    return {
        "benchmark": "idle", "seconds": round(wall, 2), "backend": (
            "postgres+redis" if rt.settings.pg_url else "sqlite"),
        "processes": len(pids),
        "cpu_percent_of_core": total,
        "per_process": dict(sorted(per.items(), key=lambda kv: -(kv[1] or 0))),
        "database_cpu_percent_of_core": db_total if backends else None,
        "database": db or None,
        "target_percent": TARGET_PERCENT,
        "under_target": total < TARGET_PERCENT,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


@contextlib.contextmanager
def _lab(running: bool) -> Iterator[LocalRuntime]:
    if running:
        yield LocalRuntime()
        return
    from labkit.bench.system import temporary_lab

    with temporary_lab() as rt:
        rt.up(progress=False)
        yield rt


def bench_idle(seconds: float = 20.0, settle: float = 3.0, running: bool = False
               ) -> dict[str, Any]:
    """A lab at rest: start a fresh one (or take the running one), wait `settle` s, measure."""
    if seconds <= 0 or settle < 0:
        raise RuntimeErrorWithHint("--seconds must be more than 0 and --settle at least 0")
    with _lab(running) as rt:
        time.sleep(settle)
        out = measure(rt, seconds)
        out["settle"] = settle
        out["lab"] = "running" if running else "fresh"
        return out
