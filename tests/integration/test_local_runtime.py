"""The local runtime: real processes started from the manifests' container specs, watched,
restarted and stopped by pid."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import replace

import httpx
import psutil
import pytest

from ecommerce.config import REPO_DIR
from ecommerce.services.registry import SERVICES
from labkit.runtime.local import LocalRuntime, RuntimeErrorWithHint, launch_specs
from tests.integration.labs import lab_settings
from tests.waiting import wait_until

SERVICES_UNDER_TEST = ["command-service", "query-service", "event-processor"]


def test_launch_specs_come_from_the_manifests() -> None:
    specs = launch_specs()
    assert set(specs) == set(SERVICES)
    for name, spec in specs.items():
        assert spec.command[:2] == [sys.executable, "-m"]
        assert spec.command[2] == SERVICES[name].module
        assert spec.command[3:] == list(SERVICES[name].args)
        # Addresses are the runtime's business, never copied from the cluster manifests.
        assert not any(k.endswith("_URL") or k in ("LABKIT_HOST", "LABKIT_PORT") for k in spec.env)


def test_up_kill_restart_down_leaves_nothing_behind(tmp_path) -> None:
    rt = LocalRuntime(lab_settings(tmp_path), SERVICES_UNDER_TEST)
    try:
        rows = {r["service"]: r for r in rt.up(progress=False)}
        assert rows["command-service"]["status"] == "ready"
        # The follower serves its heartbeat probes on a port of its own.
        assert rows["event-processor"]["status"] == "ready"
        beat = httpx.get(rt.url("event-processor") + "/healthz", timeout=5).json()
        assert beat["status"] == "ok" and beat["service"] == "event-processor"
        pids = {n: r["pid"] for n, r in rows.items()}
        url_before = rt.url("query-service")

        rt.kill("query-service")
        rows = {r["service"]: r for r in rt.status()}
        assert rows["query-service"]["status"] == "stopped" and rows["query-service"]["pid"] is None

        rows = {r["service"]: r for r in rt.up(progress=False)}
        assert rows["query-service"]["status"] == "ready"
        assert rows["query-service"]["pid"] != pids["query-service"]
        assert rt.url("query-service") == url_before, "a restarted service keeps its port"
        assert rows["command-service"]["pid"] == pids["command-service"], "running ones are kept"

        log = rt.logs("command-service")
        assert any(json.loads(line).get("msg") == "starting" for line in log.splitlines()
                   if line.startswith("{"))
        alive = [r["pid"] for r in rt.status() if r["pid"]]
    finally:
        stopped = rt.down()
    assert set(stopped) == set(SERVICES_UNDER_TEST)
    assert not [p for p in alive if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert rt.down() == []  # idempotent
    assert all(r["status"] == "not started" for r in rt.status())


def test_every_restart_keeps_the_port_and_the_override(tmp_path) -> None:
    """restart, restart_one and restart_gateway start a process as deployed: on its port, with
    its override (a challenge's manifests stay when the student toggles rewrite-target)."""
    from labkit.runtime.gateway import MANIFESTS_ENV, REWRITE_ENV

    rt = LocalRuntime(lab_settings(tmp_path), ["query-service", "gateway"])

    def env(name: str) -> dict[str, str]:
        pid = next(r["pid"] for r in rt.status() if r["service"] == name)
        return psutil.Process(pid).environ()

    try:
        rt.up(progress=False)
        urls = {n: rt.url(n) for n in ("query-service", "gateway")}
        manifests = str(tmp_path / "applied")
        shutil.copytree(REPO_DIR / "manifests", manifests)
        rt.set_override("gateway", {MANIFESTS_ENV: manifests}, "routes from elsewhere")
        rt.set_override("query-service", {"LABKIT_PROBE_MARK": "1"}, "marked")

        row = rt.restart_gateway("/")
        assert row["status"] == "ready"
        assert env("gateway")[REWRITE_ENV] == "/" and env("gateway")[MANIFESTS_ENV] == manifests
        rt.restart_one("gateway")
        assert REWRITE_ENV not in env("gateway") and env("gateway")[MANIFESTS_ENV] == manifests

        rt.kill("query-service")
        assert rt.restart(["query-service"]) == []  # restart: only what runs
        assert rt.restart_one("query-service")["status"] == "ready"  # restart_one: down too
        assert env("query-service")["LABKIT_PROBE_MARK"] == "1"
        assert rt.restart(["query-service", "gateway"]) == ["query-service", "gateway"]
        assert {n: rt.url(n) for n in urls} == urls
        assert env("query-service")["LABKIT_PROBE_MARK"] == "1"
    finally:
        rt.down()


def _occupy(port: int) -> socket.socket | None:
    """Another program's server on `port`, once the kernel has let the lab's go."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a TIME_WAIT, as uvicorn
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def test_a_taken_port_says_which_and_what_to_do(tmp_path) -> None:
    """While part of the lab runs, its peers' URLs hold the kept ports: one taken meanwhile by
    another program is refused, with what to do."""
    rt = LocalRuntime(lab_settings(tmp_path), ["query-service", "command-service"])
    rt.up(progress=False)
    port = int(rt.url("command-service").rsplit(":", 1)[1])
    rt.kill("command-service")
    blocker = wait_until(lambda: _occupy(port), what=f"port {port} to be let go")
    try:
        with pytest.raises(RuntimeErrorWithHint,
                           match=re.escape(f"port {port} for command-service is taken")):
            rt.up(progress=False)
    finally:
        blocker.close()
        rt.down()


def test_a_killed_service_has_let_its_port_go_when_kill_returns(tmp_path) -> None:
    """`lab.kill(...)` then `lab.up()` at once restarts on the same port: the kernel closes a
    killed process's socket a few ms after the process is gone, and kill waits for that."""
    from labkit.runtime.local import port_is_free

    rt = LocalRuntime(lab_settings(tmp_path), ["command-service"])
    rt.up(progress=False)
    url = rt.url("command-service")
    try:
        for _ in range(3):
            rt.kill("command-service")
            assert port_is_free(int(url.rsplit(":", 1)[1]))
            rt.up(progress=False)
            assert rt.url("command-service") == url
    finally:
        rt.down()


def test_a_stopped_lab_moves_off_a_port_another_program_took(tmp_path) -> None:
    """After `down` nothing holds the old URLs: `up` picks a new port for a kept one that is
    gone (CI once saw a test's server take event-store-api's port between two notebooks)."""
    rt = LocalRuntime(lab_settings(tmp_path), ["query-service", "command-service"])
    rt.up(progress=False)
    old = {n: rt.url(n) for n in ("query-service", "command-service")}
    rt.down()
    port = int(old["command-service"].rsplit(":", 1)[1])
    blocker = wait_until(lambda: _occupy(port), what=f"port {port} to be let go")
    try:
        rt.up(progress=False)
        assert rt.url("command-service") != old["command-service"]
        assert rt.url("query-service") == old["query-service"], "a free kept port is kept"
        assert httpx.get(rt.url("command-service") + "/healthz").status_code == 200
        # the new port is the one kept from now on, and the one its peers were given
        again = LocalRuntime(lab_settings(tmp_path), ["query-service", "command-service"])
        assert again.url("command-service") == rt.url("command-service")
    finally:
        blocker.close()
        rt.down()


def test_a_service_that_dies_at_start_up_shows_its_log(tmp_path) -> None:
    settings = lab_settings(tmp_path, redis_url="redis://127.0.0.1:1/0")
    rt = LocalRuntime(settings, ["query-service"])
    with pytest.raises(RuntimeErrorWithHint, match=re.escape("Redis at redis://127.0.0.1:1/0")):
        rt.up(progress=False, timeout=20)
    rt.down()


def test_unknown_service_url_is_a_clear_error(tmp_path) -> None:
    rt = LocalRuntime(lab_settings(tmp_path), ["command-service"])
    with pytest.raises(RuntimeErrorWithHint, match="no URL for 'nope'"):
        rt.url("nope")


def test_the_cli_runs_up_status_down(tmp_path) -> None:
    env = {"LABKIT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "labkit.cli", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert {r["status"] for r in json.loads(status.stdout)} == {"not started"}
    bad = run("logs", "nope")
    assert bad.returncode == 1 and "error: unknown process 'nope'; known: " in bad.stderr
    down = run("down")
    assert down.returncode == 0 and "nothing was running" in down.stdout
    for argv, expected in ((["saga", "--help"], "place"), (["chaos", "--help"], "--runs"),
                           (["bench", "saga", "--help"], "--concurrency")):
        helped = run(*argv)
        assert helped.returncode == 0 and expected in helped.stdout, argv


@pytest.mark.postgres
@pytest.mark.redis
def test_reset_erases_the_labs_own_schema_and_prefix_and_nothing_else(
        tmp_path, pg_schema: tuple[str, str], redis_prefix: tuple[str, str]) -> None:
    """With its stores on servers, `reset` must empty them too: 06-cleanup promises "nothing
    left", and a read model left behind keeps checkpoints of projections that are gone."""
    import redis

    from ecommerce.domain.events import NewEvent
    from ecommerce.store.postgres_events import PostgresEventStore

    (pg_url, schema), (redis_url, prefix) = pg_schema, redis_prefix
    settings = replace(lab_settings(tmp_path / "data", pg_url=pg_url, redis_url=redis_url,
                                    tag=schema), redis_prefix=prefix)
    settings.data_dir.mkdir()
    other_prefix = prefix + "x"
    client = redis.Redis.from_url(redis_url)
    events = PostgresEventStore(pg_url, schema=schema)
    try:
        events.append("user-1", [NewEvent("UserCreated", {"user_id": "1"})], "none")
        client.hset(f"{prefix}:checkpoints", "orders-per-user", '{"position": 471}')
        client.set(f"{prefix}:doc:users:1", "{}")
        client.set(f"{other_prefix}:doc:users:1", "{}")  # another lab's

        LocalRuntime(settings).reset()

        assert events.read_all() == [] and not settings.data_dir.exists()
        assert list(client.scan_iter(match=f"{prefix}:*")) == []
        assert client.get(f"{other_prefix}:doc:users:1") == b"{}"
    finally:
        client.delete(f"{other_prefix}:doc:users:1")
        events.close()


@pytest.mark.postgres
@pytest.mark.redis
def test_a_benchmarks_lab_keeps_off_the_students_schema_and_prefix(
        monkeypatch: pytest.MonkeyPatch, pg_schema: tuple[str, str],
        redis_prefix: tuple[str, str]) -> None:
    """`labkit bench ...` on PostgreSQL + Redis: its temporary lab gets a schema and a prefix
    of its own, dropped afterwards; the student's (LABKIT_PG_SCHEMA / _PREFIX) are not used."""
    import psycopg
    import redis

    from ecommerce.domain.events import NewEvent
    from ecommerce.store.postgres_events import PostgresEventStore
    from labkit.bench.system import temporary_lab

    (pg_url, schema), (redis_url, prefix) = pg_schema, redis_prefix
    for k, v in {"LABKIT_PG_URL": pg_url, "LABKIT_REDIS_URL": redis_url,
                 "LABKIT_PG_SCHEMA": schema, "LABKIT_REDIS_PREFIX": prefix}.items():
        monkeypatch.setenv(k, v)
    client = redis.Redis.from_url(redis_url)
    with temporary_lab() as rt:
        own = rt.settings
        assert own.pg_schema != schema and own.redis_prefix != prefix
        with contextlib.closing(PostgresEventStore(pg_url, schema=own.pg_schema)) as events:
            events.append("user-1", [NewEvent("UserCreated", {"user_id": "1"})], "none")
        client.set(f"{own.redis_prefix}:doc:users:1", "{}")
    with psycopg.connect(pg_url) as conn:
        left = conn.execute("SELECT count(*) FROM information_schema.schemata "
                            "WHERE schema_name = %s", (own.pg_schema,)).fetchone()
    assert left == (0,)
    assert list(client.scan_iter(match=f"{own.redis_prefix}:*")) == []


def test_a_port_kept_for_a_later_step_is_never_given_to_another_lab(tmp_path, monkeypatch):
    """The notebooks start the lab step by step: the ports of later steps' services are kept
    (peers know them) but unbound for minutes. CI saw another lab on the machine get four of
    them, and then each lab's `up` found its port "taken by another program"."""
    from labkit.runtime import ports

    a = LocalRuntime(lab_settings(tmp_path / "a"))
    try:
        a.up(step="01-networking", progress=False)
        state = json.loads(a.state_file.read_text())
        running = set(state["processes"])
        unstarted = [p for n, p in state["ports"].items() if n not in running]
        assert unstarted, state
        real = ports.kernel_free_port
        offered = iter(unstarted)
        monkeypatch.setattr(ports, "kernel_free_port", lambda: next(offered, None) or real())
        b = LocalRuntime(lab_settings(tmp_path / "b"))
        given = b._assign_ports(launch_specs(b.names))
        assert not set(given.values()) & set(unstarted)
    finally:
        a.down()
