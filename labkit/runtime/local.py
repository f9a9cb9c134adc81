"""The embedded local mode: every service of the lab as its own process on 127.0.0.1.

The processes run the same entrypoints with the same environment variable names as the
Kubernetes manifests (read from `manifests/`); only addresses and the two databases are
overridden. PostgreSQL and Redis are replaced by SQLite files under the data directory unless
LABKIT_PG_URL / LABKIT_REDIS_URL are set, in which case the same processes use those servers.

State lives in `<data dir>/runtime.json` (service -> pid, port, start time), so `labkit status`
and `labkit down` from another shell, or a restarted notebook kernel, find the same processes.

`up` is all or nothing: every needed port is checked before anything starts, each process is
written to runtime.json the moment it is spawned, and if the start fails (a process dies, is
not ready in time, the user interrupts) `up` stops exactly the processes it started before
raising. So `labkit down` always finds what runs, and the next `up` starts from a clean slate.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from ecommerce.config import Settings, service_url_var
from ecommerce.plugins import PLUGINS_ENV
from ecommerce.services.registry import SERVICES, TASKS
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.runtime.manifests import STEPS
from labkit.runtime.ports import pick, release
from labkit.runtime.steps import GATEWAY, process_steps, processes_for, workload_for

#: Variables the local runtime decides itself (addresses and databases).
OVERRIDDEN = ("LABKIT_HOST", "LABKIT_PORT", "LABKIT_PG_URL", "LABKIT_REDIS_URL", PLUGINS_ENV)
READY_TIMEOUT = 30.0
#: The local gateway's port (the course's curl lines use http://localhost:8080); 0: any free port.
GATEWAY_PORT_ENV = "LABKIT_GATEWAY_PORT"
DEFAULT_GATEWAY_PORT = 8080
#: Set to `/` to give the gateway the course's `rewrite-target: /` for the Ingress rules.
REWRITE_ENV = "LABKIT_GATEWAY_REWRITE_TARGET"
#: The local lab's admin token, in the data directory (see `LocalRuntime.admin_token`).
ADMIN_TOKEN_FILE = "admin-token"
#: Processes whose behaviour LABKIT_FAULTS changes (the registry says who reads it).
FAULT_READERS = frozenset(n for n, s in SERVICES.items() if "LABKIT_FAULTS" in s.env)


class RuntimeErrorWithHint(RuntimeError):
    """Something the student can fix; the message says what to do."""


@dataclass
class ProcessRecord:
    name: str
    pid: int
    port: int | None
    started: float  # process create time (psutil), to never signal a recycled pid
    command: list[str]
    log: str
    #: Started with LABKIT_FAULTS=1 (fault injection on).
    faults: bool = False

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None


@dataclass(frozen=True)
class LaunchSpec:
    """What to run for one local process: from the manifests, else from the registry."""

    name: str
    command: list[str]
    env: dict[str, str]
    http: bool


def launch_specs(names: Iterable[str] | None = None) -> dict[str, LaunchSpec]:
    """Commands and literal environment of each process, taken from the manifests."""
    from labkit.runtime.manifests import container_specs

    containers = container_specs()
    out: dict[str, LaunchSpec] = {}
    registry = {**SERVICES, **TASKS}
    for name in names if names is not None else SERVICES:
        if name == GATEWAY:  # labkit's own process: the manifests' routing rules, served
            out[name] = LaunchSpec(name, [sys.executable, "-m", "labkit.runtime.gateway"], {}, True)
            continue
        spec = registry[name]
        container = containers.get(workload_for(spec)) or containers.get(spec.name)
        if container is None or container.module is None:
            raise RuntimeErrorWithHint(
                f"manifests/ has no container for {name!r} (workload {workload_for(spec)!r}); "
                "run `labkit validate` to see what is wrong with the manifests"
            )
        command = [sys.executable, "-m", container.module, *container.args]
        env = {k: v for k, v in container.literal_env.items() if k not in OVERRIDDEN
               and not (k.startswith("LABKIT_") and k.endswith("_URL"))}
        # A follower with probes gets a port too: /readyz tells `up` and `status` how it is.
        out[name] = LaunchSpec(name, command, env, spec.http or spec.probes)
    return out


def gateway_port() -> int:
    """LABKIT_GATEWAY_PORT (default 8080); 0 means any free port."""
    text = os.environ.get(GATEWAY_PORT_ENV, "").strip() or str(DEFAULT_GATEWAY_PORT)
    if not text.isdigit() or int(text) > 65535:
        raise RuntimeErrorWithHint(f"{GATEWAY_PORT_ENV} must be a port number (0: any free "
                                   f"port); got {text!r}")
    return int(text)


def port_is_free(port: int) -> bool:
    """Could a server bind the port? Like uvicorn, allow reuse of a port whose previous owner
    left connections in TIME_WAIT (a killed service must restart on its own port at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _let_go(ports: Iterable[int | None], timeout: float = 2.0) -> None:
    """Wait until the ports of processes that just died are free again: a killed process is
    gone a few milliseconds before the kernel closes its listening socket, and a restart on
    the same port at once would find it "taken by another program"."""
    for port in ports:
        if port:
            with contextlib.suppress(WaitTimeout):  # really taken: the start says so
                wait_until(functools.partial(port_is_free, port), timeout=timeout,
                           interval=0.002, max_interval=0.05, what=f"port {port} to be free")


def _owner(port: int) -> str:
    """` (pid 123, nginx)` when this user may see who listens on the port, else ``."""
    try:
        import psutil

        for c in psutil.net_connections("tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return f" (pid {c.pid}, {psutil.Process(c.pid).name()})"
    except Exception:  # not allowed to look (macOS without root): say nothing
        pass
    return ""


def _proc(pid: int, started: float) -> Any:
    """The psutil process if `pid` is still the process we started, else None."""
    import psutil

    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - started) > 1.0 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def readiness_detail(response: httpx.Response) -> str | None:
    """What a `/readyz` answer says beyond "ok": why it is not ready, or a note (a rebuild)."""
    try:
        checks = response.json().get("checks") or {}
    except (ValueError, AttributeError):
        return None
    said = [f"{name}: {text}" for name, text in checks.items() if text != "ok"]
    return "; ".join(said) or None


class PluginFailed(RuntimeErrorWithHint):
    """A service could not load a plugin (the message: which file, which line, what to do)."""


def drop_server_data(settings: Settings) -> None:
    """Drop a throwaway lab's PostgreSQL schema and Redis keys, when it used the servers
    (a benchmark's or a test's lab; `LocalRuntime.reset` empties a student's instead)."""
    if settings.pg_url:
        drop_pg_schema(settings.pg_url, settings.pg_schema)
    if settings.redis_url:
        drop_redis_prefix(settings.redis_url, settings.redis_prefix)


def drop_pg_schema(url: str, schema: str) -> None:
    """DROP SCHEMA ... CASCADE, if the server answers (a cleanup: errors are not raised)."""
    import psycopg
    from psycopg import sql

    with contextlib.suppress(psycopg.Error), psycopg.connect(
            url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix:`, if the server answers (a cleanup)."""
    from ecommerce.store.redis_read import RedisReadStore

    with contextlib.suppress(Exception), contextlib.closing(
            RedisReadStore(url, prefix=prefix)) as reads:
        reads.erase()


class LocalRuntime:
    """Start, watch and stop the lab's processes on this machine."""

    mode = "local"

    def __init__(self, settings: Settings | None = None, services: Iterable[str] | None = None,
                 *, gateway_port: int | None = None):
        self.settings = settings or Settings.from_env()
        #: The gateway's port: None reads LABKIT_GATEWAY_PORT (default 8080); 0: any free port.
        self.gateway_port = gateway_port
        self.data_dir = self.settings.data_dir
        self.names = list(services or [*SERVICES, GATEWAY])
        self.state_file = self.data_dir / "runtime.json"
        self._steps: dict[str, str] | None = None  # process -> step, read once from manifests/
        self.log_dir = self.data_dir / "logs"
        #: Student code the services load at start (`ecommerce.plugins`, `lab.deploy_code`).
        self.plugins_dir = self.data_dir / "plugins"

    # ---- state ---------------------------------------------------------------------------
    def _bad_data_dir(self, exc: OSError) -> RuntimeErrorWithHint:
        reason = exc.strerror or type(exc).__name__
        return RuntimeErrorWithHint(
            f"the lab's data directory {self.data_dir} cannot be used ({reason}); set "
            "LABKIT_DATA_DIR to a folder you can write to."
        )

    def check_data_dir(self) -> None:
        """Raise one sentence if the data directory cannot hold the lab's files."""
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self._bad_data_dir(exc) from None

    def _read_state(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        except OSError as exc:
            raise self._bad_data_dir(exc) from None
        return raw if isinstance(raw, dict) else {}

    def _load(self) -> dict[str, ProcessRecord]:
        raw = self._read_state()
        return {k: ProcessRecord(**v) for k, v in raw.get("processes", {}).items()}

    def _save(self, records: dict[str, ProcessRecord], ports: dict[str, int] | None = None
              ) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"processes": {k: asdict(v) for k, v in records.items()},
                                       "ports": {**self._ports(records), **(ports or {})},
                                       "overrides": self.overrides()},
                                      indent=2))
            tmp.replace(self.state_file)
        except OSError as exc:
            raise self._bad_data_dir(exc) from None

    def _ports(self, records: dict[str, ProcessRecord]) -> dict[str, int]:
        """Ports stay the same for the life of the data directory, so peers' URLs stay valid."""
        ports = dict(self._read_state().get("ports", {}))
        ports.update({k: r.port for k, r in records.items() if r.port})
        return ports

    def _assign_ports(self, specs: dict[str, LaunchSpec]) -> dict[str, int]:
        records = self._load()
        ports = self._ports(records)
        if GATEWAY in specs:
            # Not kept for the data directory's life like the services' ports: it follows
            # LABKIT_GATEWAY_PORT at each start (a running gateway keeps its port).
            rec = records.get(GATEWAY)
            running = rec is not None and _proc(rec.pid, rec.started) is not None
            if running and rec is not None and rec.port:
                ports[GATEWAY] = rec.port
            else:
                chosen = self.gateway_port if self.gateway_port is not None else gateway_port()
                ports[GATEWAY] = chosen or pick(self.data_dir, set(ports.values()))
        if not any(_proc(r.pid, r.started) is not None for r in records.values()):
            # Nothing of the lab runs, so no peer holds a kept port in its URL: a kept port
            # another program took meanwhile (a test run, another lab) is simply chosen again.
            for name, port in list(ports.items()):
                if name != GATEWAY and not port_is_free(port):
                    del ports[name]
        taken = set(ports.values())
        for name, spec in specs.items():
            if spec.http and name not in ports:
                # Claimed machine-wide: kept until the service starts (maybe a later step),
                # when nothing listens on it yet, and another lab must not be given it.
                ports[name] = pick(self.data_dir, taken)
                taken.add(ports[name])
        return ports

    # ---- environment ------------------------------------------------------------------------
    def admin_token(self) -> str:
        """The admin commands' token: LABKIT_ADMIN_TOKEN if you set one, else this data
        directory's own (`<data dir>/admin-token`, made on first use, readable by you only)."""
        if self.settings.admin_token:
            return self.settings.admin_token
        path = self.data_dir / ADMIN_TOKEN_FILE
        try:
            token = path.read_text().strip()
            if token:
                return token
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._bad_data_dir(exc) from None
        token = secrets.token_hex(16)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        except OSError as exc:
            raise self._bad_data_dir(exc) from None
        return token

    def faults_on(self) -> bool:
        """Is fault injection on in the running lab (else: did you ask with LABKIT_FAULTS=1)?"""
        running = [r for r in self._load().values() if r.name in FAULT_READERS
                   and _proc(r.pid, r.started) is not None]
        if running:
            return any(r.faults for r in running)
        return os.environ.get("LABKIT_FAULTS") == "1"

    def environment(self, spec: LaunchSpec, ports: dict[str, int],
                    faults: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
        env.update(spec.env)
        # Off unless asked for (lab.up(faults=True), `labkit up --faults`, LABKIT_FAULTS=1).
        env["LABKIT_FAULTS"] = "1" if faults else "0"
        env["LABKIT_ADMIN_TOKEN"] = self.admin_token()
        s = self.settings
        for name, value in (("LABKIT_PG_URL", s.pg_url), ("LABKIT_REDIS_URL", s.redis_url),
                            ("LABKIT_PG_SCHEMA", s.pg_schema), ("LABKIT_REDIS_PREFIX", s.redis_prefix),
                            ("LABKIT_SQLITE_SYNCHRONOUS", s.sqlite_synchronous),
                            ("LABKIT_PG_SYNCHRONOUS_COMMIT", s.pg_synchronous_commit)):
            if value:
                env[name] = value
        env["LABKIT_DATA_DIR"] = str(self.data_dir)
        env["LABKIT_EVENTS_DB"] = str(self.settings.events_db)
        env["LABKIT_READ_DB"] = str(self.settings.read_db)
        env[PLUGINS_ENV] = str(self.plugins_dir)
        if spec.name == GATEWAY and os.environ.get(REWRITE_ENV):
            env[REWRITE_ENV] = os.environ[REWRITE_ENV]  # the course's rewrite-target, on request
        env["LABKIT_HOST"] = "127.0.0.1"
        env["PYTHONUNBUFFERED"] = "1"
        if spec.name in ports:
            env["LABKIT_PORT"] = str(ports[spec.name])
        for other, port in ports.items():
            env[service_url_var(other)] = f"http://127.0.0.1:{port}"
        return env

    # ---- lifecycle ------------------------------------------------------------------------------
    def up(self, wait: bool = True, progress: bool = True, timeout: float = READY_TIMEOUT,
           step: str | None = None, faults: bool | None = None) -> list[dict[str, Any]]:
        """Start every process that is not running (restarting crashed ones); wait until ready.

        `step` ("02-saga"): only the processes of that step and the steps before it, as the
        course builds the system up. Returns the status rows of those steps.

        `faults`: fault injection on (True) or off (False) for the participants (/faults) and
        command-service (`crash_after`); running ones started the other way are restarted.
        None keeps what runs (off for a new lab, unless LABKIT_FAULTS=1).

        All or nothing: if anything fails, the processes this call started are stopped again
        (those that were already running are left alone) before the error is raised.
        """
        self.check_data_dir()
        names = processes_for(step, self.names) if step is not None else self.names
        specs = launch_specs(names)
        records = self._load()
        # Every service's port, started now or in a later step: like a Service's DNS name in
        # 01-networking, a peer's address is known before its pods run.
        ports = self._assign_ports(launch_specs(self.names))
        self._check_databases()
        wanted = self.faults_on() if faults is None else faults
        flip = [n for n in specs if n in FAULT_READERS and (rec := records.get(n)) is not None
                and rec.faults != wanted and _proc(rec.pid, rec.started) is not None]
        if flip:  # started with fault injection the other way: start them again
            self._stop(flip)
            records = self._load()
        todo = {n: s for n, s in specs.items()
                if not (records.get(n) and _proc(records[n].pid, records[n].started) is not None)}
        for name in todo:  # every port first: fail before starting anything
            port = ports.get(name)
            if port is not None and not port_is_free(port):
                raise RuntimeErrorWithHint(self._port_taken(name, port) + " (nothing was started)")
        started: list[str] = []
        try:
            for name, spec in todo.items():
                records[name] = self._spawn(spec, ports, self._override_env(name), faults=wanted)
                started.append(name)
                self._save(records, ports)  # recorded at once: `labkit down` finds it, whatever happens
            if wait:
                self.wait_ready(started or list(specs), timeout=timeout, progress=progress)
        except BaseException:
            self._stop(started)
            raise
        if step is None:
            return self.status()
        return self.database_rows() + [r for r in self.status() if r["service"] in specs]

    def database_rows(self) -> list[dict[str, Any]]:
        """What stands for 00-base's PostgreSQL and Redis here (status rows, no process)."""
        s = self.settings
        events = (f"PostgreSQL {s.pg_url.rsplit('@', 1)[-1]} schema {s.pg_schema}" if s.pg_url
                  else f"SQLite {s.events_db}")
        read = (f"Redis {s.redis_url.rsplit('@', 1)[-1]} prefix {s.redis_prefix}" if s.redis_url
                else f"SQLite {s.read_db}")
        return [{"service": "postgres (event store)", "url": events, "pid": None,
                 "status": "ready", "rss_mb": None, "step": "00-base", "detail": ""},
                {"service": "redis (read model)", "url": read, "pid": None, "status": "ready",
                 "rss_mb": None, "step": "00-base", "detail": ""}]

    @staticmethod
    def _port_taken(name: str, port: int) -> str:
        if name == GATEWAY:
            return (f"port {port} for the gateway is taken by another program{_owner(port)}. "
                    f"Stop it, or choose another port: `{GATEWAY_PORT_ENV}=8081 labkit up` (in "
                    f"notebooks, start JupyterLab with `{GATEWAY_PORT_ENV}=8081 make lab`; "
                    f"`{GATEWAY_PORT_ENV}=0` takes any free port). lab.url('gateway') shows the "
                    "address in use.")
        return (f"port {port} for {name} is taken by another program{_owner(port)} while the "
                "rest of the lab runs on the addresses it was given; stop that program, or "
                "`labkit down` then `labkit up` (a stopped lab picks a new port, data kept)")

    def _check_databases(self) -> None:
        from ecommerce.store.factory import open_event_store, open_read_store

        try:
            open_event_store(self.settings).close()
            open_read_store(self.settings).close()
        except Exception as exc:
            raise RuntimeErrorWithHint(f"cannot open the lab's databases: {exc}") from None

    def _spawn(self, spec: LaunchSpec, ports: dict[str, int],
               extra_env: dict[str, str | None] | None = None, *,
               faults: bool = False) -> ProcessRecord:
        import psutil

        env = self.environment(spec, ports, faults)
        for k, v in (extra_env or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        log_path = self.log_dir / f"{spec.name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                spec.command, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.data_dir,
                start_new_session=True,  # survives a notebook kernel restart; we stop it by pid
            )
        started = psutil.Process(proc.pid).create_time()
        return ProcessRecord(spec.name, proc.pid, ports.get(spec.name), started, spec.command,
                             str(log_path), faults)

    def wait_ready(self, names: list[str], timeout: float = READY_TIMEOUT,
                   progress: bool = True) -> None:
        records = self._load()
        pending = {n for n in names if n in records}
        from labkit.runtime.progress import Progress

        bar = Progress(len(pending), "starting", "processes", enabled=progress)
        #: What each process's /readyz said last, for the sentence if it never gets ready.
        said: dict[str, str] = {}
        try:
            with httpx.Client(timeout=1.0) as client:
                def all_ready() -> bool:
                    for name in sorted(pending):
                        rec = records[name]
                        if _proc(rec.pid, rec.started) is None:
                            raise RuntimeErrorWithHint(
                                f"{name} exited during start-up; its last log lines:\n"
                                + self._log_tail(name, tail=15)
                            )
                        if rec.url is None or self._ready(client, rec.url, said, name):
                            pending.discard(name)
                            bar.update(1)
                            bar.note(f"{name} ready")
                    return not pending

                wait_until(all_ready, timeout=timeout, interval=0.05, what="the processes")
        except WaitTimeout:
            why = "; ".join(f"{n}: {said[n]}" for n in sorted(pending) if said.get(n))
            first = sorted(pending)[0]
            raise RuntimeErrorWithHint(
                f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}"
                + (f" ({why})" if why else "") + f"; see `labkit logs {first}`"
            ) from None
        finally:
            bar.close()

    @staticmethod
    def _ready(client: httpx.Client, url: str, said: dict[str, str] | None = None,
               name: str = "") -> bool:
        """Ready; raises at once when a plugin failed to load (it will not get better). What
        a not-ready answer says goes into `said[name]`."""
        try:
            response = client.get(url + "/readyz")
        except httpx.HTTPError:
            return False
        if response.status_code == 200:
            return True
        if said is not None:
            said[name] = (readiness_detail(response) or f"HTTP {response.status_code}")[:600]
        try:
            failed = (response.json().get("checks") or {}).get("plugins", "")
        except (ValueError, AttributeError):
            failed = ""
        if failed and failed != "ok" and not str(failed).startswith("ok"):
            raise PluginFailed(str(failed))
        return False

    def down(self, timeout: float = 10.0) -> list[str]:
        """Stop exactly the processes this runtime started (by pid). Idempotent."""
        stopped = self._stop(list(self._load()), timeout)
        self._save({})
        if self.overrides():  # like deleting the Deployments: the next `up` runs the manifests
            self._write_overrides({})
        return stopped

    def _stop(self, names: list[str], timeout: float = 10.0) -> list[str]:
        """SIGTERM these recorded processes (then SIGKILL), forget them; the names stopped."""
        import psutil

        records = self._load()
        alive = {n: p for n in names if (r := records.get(n)) is not None
                 and (p := _proc(r.pid, r.started)) is not None}
        for p in alive.values():
            with contextlib.suppress(Exception):
                p.send_signal(signal.SIGTERM)
        _, still = psutil.wait_procs(list(alive.values()), timeout=timeout)
        for p in still:
            with contextlib.suppress(Exception):
                p.kill()
        psutil.wait_procs(still, timeout=5)
        _let_go([records[n].port for n in alive])
        left = {n: r for n, r in records.items() if n not in names}
        if left != records:
            self._save(left)
        return sorted(alive)

    def reset(self) -> None:
        """Stop everything and delete the lab's data: the data directory (databases, logs,
        ports, deployed code) and, when the lab keeps its stores on servers
        (`LABKIT_PG_URL` / `LABKIT_REDIS_URL`), its events in that PostgreSQL schema and its
        read model under that Redis prefix. Other schemas and prefixes are not touched."""
        import shutil

        self.down()
        s = self.settings
        if s.pg_url:
            from ecommerce.store.postgres_events import PostgresEventStore

            with contextlib.closing(PostgresEventStore(s.pg_url, schema=s.pg_schema)) as events:
                events.wipe()
        if s.redis_url:
            from ecommerce.store.redis_read import RedisReadStore

            with contextlib.closing(RedisReadStore(s.redis_url, prefix=s.redis_prefix)) as reads:
                reads.erase()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        release(self.data_dir)  # its ports may go to another lab now

    def check_known(self, name: str) -> None:
        """Refuse a name that is not one of the lab's processes, listing those that are."""
        if name not in self.names:
            raise RuntimeErrorWithHint(f"unknown process {name!r}; known: {', '.join(self.names)}")

    def restart(self, names: Iterable[str], timeout: float = READY_TIMEOUT) -> list[str]:
        """Stop these running processes and start them again on the same ports (they load
        the plugins again); wait until they are ready. Returns the names restarted."""
        running = self._running(self._load(), names)
        if running:
            self._respawn(running, timeout)
        return running

    @staticmethod
    def _running(records: dict[str, ProcessRecord], names: Iterable[str]) -> list[str]:
        """Those of `names` whose recorded process is alive."""
        return [n for n in names if (r := records.get(n)) is not None
                and _proc(r.pid, r.started) is not None]

    def restart_gateway(self, rewrite_target: str | None = None, timeout: float = READY_TIMEOUT
                        ) -> dict[str, Any]:
        """Restart the gateway, with the course's `rewrite-target` (e.g. "/") for its Ingress
        rules or without it (None); it keeps its port. Returns its status row."""
        self._respawn([GATEWAY], timeout, {GATEWAY: {REWRITE_ENV: rewrite_target}})
        return next(r for r in self.status() if r["service"] == GATEWAY)

    def restart_one(self, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Stop one process (SIGTERM, like a rolling restart), or nothing if it is down, and
        start it as deployed (the manifests plus its override, if any); wait until it is
        ready. Its status row."""
        self.check_known(name)
        self._respawn([name], timeout)
        return next(r for r in self.status() if r["service"] == name)

    def _respawn(self, names: list[str], timeout: float,
                 env: dict[str, dict[str, str | None]] | None = None) -> None:
        """Stop those of `names` that run (SIGTERM), start each again on its port as deployed
        (the manifests, its override, then `env[name]`) with fault injection as it was, and
        wait until they are ready."""
        records = self._load()
        specs = launch_specs(names)
        ports = self._assign_ports(launch_specs(list(dict.fromkeys([*self.names, *names]))))
        faults = {n: records[n].faults if n in records else self.faults_on() for n in names}
        running = self._running(records, names)
        if running:
            self._stop(running)
            records = self._load()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            port = ports.get(name)
            if port is not None and not port_is_free(port):
                raise RuntimeErrorWithHint(self._port_taken(name, port))
            records[name] = self._spawn(specs[name], ports, {
                **self._override_env(name), **(env or {}).get(name, {})}, faults=faults[name])
            self._save(records, ports)
        self.wait_ready(names, timeout=timeout, progress=False)

    # ---- deployed differently from the manifests (a bad build, a patched config) ------------
    def overrides(self) -> dict[str, dict[str, Any]]:
        """Process -> {"env": {...}, "note": "..."}: what runs differently from the manifests
        (kept in runtime.json, so a restart or `labkit up` after a crash keeps it, like a
        Deployment's patched spec). `labkit status` shows the note."""
        raw = self._read_state().get("overrides") or {}
        return {k: v for k, v in raw.items() if isinstance(v, dict)}

    def _override_env(self, name: str) -> dict[str, str | None]:
        return dict(self.overrides().get(name, {}).get("env") or {})

    def _write_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        state = self._read_state()
        state["overrides"] = overrides
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(self.state_file)
        except OSError as exc:
            raise self._bad_data_dir(exc) from None

    def set_override(self, name: str, env: dict[str, str], note: str) -> None:
        """Run `name` with these extra environment variables from its next start on."""
        self.check_known(name)
        overrides = self.overrides()
        overrides[name] = {"env": dict(env), "note": note}
        self._write_overrides(overrides)

    def clear_override(self, name: str) -> bool:
        """Back to what the manifests say from its next start on; False if nothing to undo."""
        self.check_known(name)
        overrides = self.overrides()
        if overrides.pop(name, None) is None:
            return False
        self._write_overrides(overrides)
        return True

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill one service process (the crash scenarios). Returns the pid killed."""
        self.check_known(name)
        rec = self._load().get(name)
        proc = _proc(rec.pid, rec.started) if rec else None
        if rec is None or proc is None:
            raise RuntimeErrorWithHint(f"{name} is not running (see `labkit status`)")
        pid, started = rec.pid, rec.started
        proc.send_signal(sig)
        # Not our child (started by another shell or kernel): psutil's wait() would poll slowly
        # until init reaps it, but a zombie is already dead for every purpose here.
        with contextlib.suppress(WaitTimeout):  # still there after 5 s: the caller will see it
            wait_until(lambda: _proc(pid, started) is None, timeout=5, what=f"{name} to die")
        _let_go([rec.port])
        return pid

    # ---- observation --------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        records = self._load()
        if self._steps is None:
            self._steps = process_steps(self.names)
        steps = self._steps
        out: list[dict[str, Any]] = []
        with httpx.Client(timeout=0.5) as client:
            for name in self.names:
                rec = records.get(name)
                proc = _proc(rec.pid, rec.started) if rec else None
                detail = None
                if rec is None:
                    state = "not started"
                elif proc is None:
                    state = "stopped"
                elif rec.url is None:
                    state = "running"
                else:
                    try:
                        ready = client.get(rec.url + "/readyz")
                        state = "ready" if ready.status_code == 200 else "not ready"
                        detail = readiness_detail(ready)
                    except httpx.HTTPError:
                        state = "starting"
                rss = None
                if proc is not None:
                    with contextlib.suppress(Exception):
                        rss = round(proc.memory_info().rss / 2**20, 1)
                out.append({"service": name, "url": rec.url if rec else None,
                            "pid": rec.pid if rec and proc else None, "status": state,
                            "rss_mb": rss, "detail": detail, "step": steps.get(name, "")})
        overrides = self.overrides()
        for row in out:
            note = overrides.get(row["service"], {}).get("note")
            if note:
                said = f"deployed with a change: {note}"
                row["detail"] = f"{row['detail']}; {said}" if row["detail"] else said
        order = {s: i for i, s in enumerate(STEPS)}
        return sorted(out, key=lambda r: order.get(r["step"], len(order)))  # stable: as built up

    def url(self, name: str) -> str:
        rec = self._load().get(name)
        if rec is None or rec.url is None:
            known = ", ".join(n for n, r in self._load().items() if r.url)
            step = process_steps([name]).get(name) if name in [*SERVICES, GATEWAY] else None
            start = (f"; it belongs to step {step}: start it with lab.up(step={step!r}) or "
                     f"`labkit up --step {step}`" if step else "")
            raise RuntimeErrorWithHint(
                f"no URL for {name!r}: it is not an HTTP service of the running lab "
                f"(running: {known or 'nothing; run lab.up() or `labkit up`'}){start}"
            )
        return rec.url

    def logs(self, name: str, tail: int = 200) -> str:
        self.check_known(name)
        return self._log_tail(name, tail)

    def _log_tail(self, name: str, tail: int) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            raise RuntimeErrorWithHint(f"no log for {name!r} yet under {self.log_dir}")
        lines = path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def run_task(self, name: str, args: list[str] | None = None, timeout: float = 300.0
                 ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot process (a Job in Kubernetes) to completion, like `run_job`."""
        from labkit.runtime.manifests import container_specs

        containers = container_specs()
        container = containers.get(name)
        if container is None or container.module is None:
            raise RuntimeErrorWithHint(
                f"no Job/CronJob named {name!r} in manifests/ (known: "
                + ", ".join(k for k, c in containers.items() if c.kind in ("Job", "CronJob")) + ")"
            )
        spec = LaunchSpec(name, [sys.executable, "-m", container.module,
                                 *(args if args is not None else container.args)],
                          {k: v for k, v in container.literal_env.items() if k not in OVERRIDDEN
                           and not (k.startswith("LABKIT_") and k.endswith("_URL"))}, False)
        env = self.environment(spec, self._ports(self._load()))
        return subprocess.run(spec.command, env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.data_dir if self.data_dir.exists() else None)
