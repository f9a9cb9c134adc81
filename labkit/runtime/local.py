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
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from ecommerce.config import Settings, service_url_var
from ecommerce.services.registry import SERVICES, TASKS, ServiceSpec

#: Variables the local runtime decides itself (addresses and databases).
OVERRIDDEN = ("LABKIT_HOST", "LABKIT_PORT", "LABKIT_PG_URL", "LABKIT_REDIS_URL")
READY_TIMEOUT = 30.0


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


def workload_for(spec: ServiceSpec) -> str:
    """The manifest workload a local long-running process mirrors (`-follow` variants)."""
    return f"{spec.name}-follow" if "--follow" in spec.args else spec.name


def launch_specs(names: Iterable[str] | None = None) -> dict[str, LaunchSpec]:
    """Commands and literal environment of each process, taken from the manifests."""
    from labkit.runtime.manifests import container_specs

    containers = container_specs()
    out: dict[str, LaunchSpec] = {}
    registry = {**SERVICES, **TASKS}
    for name in names or SERVICES:
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
        out[name] = LaunchSpec(name, command, env, spec.http)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class LocalRuntime:
    """Start, watch and stop the lab's processes on this machine."""

    mode = "local"

    def __init__(self, settings: Settings | None = None, services: Iterable[str] | None = None):
        self.settings = settings or Settings.from_env()
        self.data_dir = self.settings.data_dir
        self.names = list(services or SERVICES)
        self.state_file = self.data_dir / "runtime.json"
        self.log_dir = self.data_dir / "logs"

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

    def _save(self, records: dict[str, ProcessRecord]) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"processes": {k: asdict(v) for k, v in records.items()},
                                       "ports": self._ports(records)}, indent=2))
            tmp.replace(self.state_file)
        except OSError as exc:
            raise self._bad_data_dir(exc) from None

    def _ports(self, records: dict[str, ProcessRecord]) -> dict[str, int]:
        """Ports stay the same for the life of the data directory, so peers' URLs stay valid."""
        ports = dict(self._read_state().get("ports", {}))
        ports.update({k: r.port for k, r in records.items() if r.port})
        return ports

    def _assign_ports(self, specs: dict[str, LaunchSpec]) -> dict[str, int]:
        ports = self._ports(self._load())
        taken = set(ports.values())
        for name, spec in specs.items():
            if spec.http and name not in ports:
                port = free_port()
                while port in taken:
                    port = free_port()
                ports[name] = port
                taken.add(port)
        return ports

    # ---- environment ------------------------------------------------------------------------
    def environment(self, spec: LaunchSpec, ports: dict[str, int]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
        env.update(spec.env)
        s = self.settings
        for name, value in (("LABKIT_PG_URL", s.pg_url), ("LABKIT_REDIS_URL", s.redis_url),
                            ("LABKIT_PG_SCHEMA", s.pg_schema), ("LABKIT_REDIS_PREFIX", s.redis_prefix),
                            ("LABKIT_SQLITE_SYNCHRONOUS", s.sqlite_synchronous)):
            if value:
                env[name] = value
        env["LABKIT_DATA_DIR"] = str(self.data_dir)
        env["LABKIT_EVENTS_DB"] = str(self.settings.events_db)
        env["LABKIT_READ_DB"] = str(self.settings.read_db)
        env["LABKIT_HOST"] = "127.0.0.1"
        env["PYTHONUNBUFFERED"] = "1"
        if spec.name in ports:
            env["LABKIT_PORT"] = str(ports[spec.name])
        for other, port in ports.items():
            env[service_url_var(other)] = f"http://127.0.0.1:{port}"
        return env

    # ---- lifecycle ------------------------------------------------------------------------------
    def up(self, wait: bool = True, progress: bool = True, timeout: float = READY_TIMEOUT
           ) -> list[dict[str, Any]]:
        """Start every process that is not running (restarting crashed ones); wait until ready.

        All or nothing: if anything fails, the processes this call started are stopped again
        (those that were already running are left alone) before the error is raised.
        """
        self.check_data_dir()
        specs = launch_specs(self.names)
        records = self._load()
        ports = self._assign_ports(specs)
        self._check_databases()
        to_start = [name for name in specs
                    if not (records.get(name) and _proc(records[name].pid,
                                                        records[name].started) is not None)]
        taken = [f"port {ports[n]} for {n}" for n in to_start
                 if ports.get(n) is not None and not port_is_free(ports[n])]
        if taken:
            raise RuntimeErrorWithHint(
                f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} taken by another "
                "program; stop it, or run `labkit reset` to pick new ports (nothing was started)"
            )
        started: list[str] = []
        try:
            for name in to_start:
                records[name] = self._spawn(specs[name], ports)
                started.append(name)
                self._save(records)  # recorded at once: `labkit down` finds it, whatever happens
            if wait:
                self.wait_ready(started or list(specs), timeout=timeout, progress=progress)
        except BaseException:
            self._stop(started)
            raise
        return self.status()

    def _check_databases(self) -> None:
        from ecommerce.store.factory import open_event_store, open_read_store

        try:
            open_event_store(self.settings).close()
            open_read_store(self.settings).close()
        except Exception as exc:
            raise RuntimeErrorWithHint(f"cannot open the lab's databases: {exc}") from None

    def _spawn(self, spec: LaunchSpec, ports: dict[str, int]) -> ProcessRecord:
        import psutil

        log_path = self.log_dir / f"{spec.name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                spec.command, env=self.environment(spec, ports), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.data_dir,
                start_new_session=True,  # survives a notebook kernel restart; we stop it by pid
            )
        started = psutil.Process(proc.pid).create_time()
        return ProcessRecord(spec.name, proc.pid, ports.get(spec.name), started, spec.command,
                             str(log_path))

    def wait_ready(self, names: list[str], timeout: float = READY_TIMEOUT,
                   progress: bool = True) -> None:
        records = self._load()
        pending = {n for n in names if n in records}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), desc="starting", unit="svc", leave=False)
        deadline = time.monotonic() + timeout
        try:
            with httpx.Client(timeout=1.0) as client:
                while pending:
                    for name in sorted(pending):
                        rec = records[name]
                        if _proc(rec.pid, rec.started) is None:
                            raise RuntimeErrorWithHint(
                                f"{name} exited during start-up; its last log lines:\n"
                                + self.logs(name, tail=15)
                            )
                        ok = rec.url is None or self._ready(client, rec.url)
                        if ok:
                            pending.discard(name)
                            if bar is not None:
                                bar.update(1)
                    if pending and time.monotonic() > deadline:
                        raise RuntimeErrorWithHint(
                            f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}; see "
                            "`labkit logs NAME`"
                        )
                    if pending:
                        time.sleep(0.05)
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def _ready(client: httpx.Client, url: str) -> bool:
        try:
            return client.get(url + "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def down(self, timeout: float = 10.0) -> list[str]:
        """Stop exactly the processes this runtime started (by pid). Idempotent."""
        stopped = self._stop(list(self._load()), timeout)
        self._save({})
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
        left = {n: r for n, r in records.items() if n not in names}
        if left != records:
            self._save(left)
        return sorted(alive)

    def reset(self) -> None:
        """Stop everything and delete the data directory (databases, logs, ports)."""
        import shutil

        self.down()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill one service process (the crash scenarios). Returns the pid killed."""
        rec = self._load().get(name)
        proc = _proc(rec.pid, rec.started) if rec else None
        if proc is None:
            raise RuntimeErrorWithHint(f"{name} is not running (see `labkit status`)")
        proc.send_signal(sig)
        # Not our child (started by another shell or kernel): psutil's wait() would poll slowly
        # until init reaps it, but a zombie is already dead for every purpose here.
        deadline = time.monotonic() + 5
        while _proc(rec.pid, rec.started) is not None and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        return rec.pid  # type: ignore[union-attr]

    # ---- observation --------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        records = self._load()
        out = []
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
                            "rss_mb": rss, "detail": detail})
        return out

    def url(self, name: str) -> str:
        rec = self._load().get(name)
        if rec is None or rec.url is None:
            known = ", ".join(n for n, r in self._load().items() if r.url)
            raise RuntimeErrorWithHint(
                f"no URL for {name!r}: it is not an HTTP service of the running lab "
                f"(running: {known or 'nothing; run lab.up() or `labkit up`'})"
            )
        return rec.url

    def logs(self, name: str, tail: int = 200) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            raise RuntimeErrorWithHint(f"no log for {name!r} yet under {self.log_dir}")
        lines = path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def run_task(self, name: str, args: list[str] | None = None, timeout: float = 300.0,
                 on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
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
