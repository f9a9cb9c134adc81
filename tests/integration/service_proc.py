"""Run one labkit service as a REAL subprocess (`python -m ecommerce.services.<name>`) for a test.

    from tests.integration.service_proc import services  # the fixture

    def test_x(services):
        inv = services.start("inventory-service")            # SQLite files under tmp_path
        inv.client.get("/api/inventory")
        pay = services.start("payment-service", pg=pg_schema)  # PostgreSQL (url, schema)

Each process gets LABKIT_HOST=127.0.0.1, a free LABKIT_PORT, LABKIT_EVENTS_DB / LABKIT_READ_DB
in the test's data directory, LABKIT_FAULTS=1 and LABKIT_ADMIN_TOKEN=ADMIN_TOKEN (the admin
commands on: `fund`, `restock` below), and nothing else from the caller's LABKIT_*
environment. `start` waits for /readyz; everything started is terminated after the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ecommerce.config import REPO_DIR
from ecommerce.services.registry import SERVICES
from tests.waiting import WaitTimeout, wait_until

#: A safety net for a service that will never be ready, not a speed limit: on a loaded machine
#: (two cores, `stress --cpu 2` beside the suite) starting Python + FastAPI alone can take 30 s.
READY_TIMEOUT = 120.0
#: The admin token every test service gets (LABKIT_ADMIN_TOKEN).
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"X-Labkit-Admin-Token": ADMIN_TOKEN}


def fund(payments: ServiceProc, account: str, amount: int) -> httpx.Response:
    """The admin command that puts money into an account (opening it if needed)."""
    return payments.client.post(f"/admin/payments/accounts/{account}/fund",
                                json={"amount": amount}, headers=ADMIN)


def restock(inventory: ServiceProc, sku: str, quantity: int) -> httpx.Response:
    return inventory.client.post(f"/admin/inventory/{sku}/restock", json={"quantity": quantity},
                                 headers=ADMIN)


def free_port(owner: Path) -> int:
    """A free port no lab has claimed (a lab keeps ports for services it has not started)."""
    from labkit.runtime.ports import pick

    return pick(owner)


def module_of(name: str) -> str:
    """`order`, `order-service` or `ecommerce.services.order` -> the module to run."""
    if name.startswith("ecommerce."):
        return name
    spec = SERVICES.get(name) or SERVICES.get(f"{name}-service")
    if spec is None:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    return spec.module


@dataclass
class ServiceProc:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def launch(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env,
                                     cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, path: str = "/readyz", timeout: float = READY_TIMEOUT) -> None:
        last = ""

        def ready() -> bool:
            nonlocal last
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while "
                                   f"starting:\n{self.log()}")
            try:
                r = self.client.get(path, timeout=2.0)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
                return False
            last = f"{r.status_code} {r.text[:300]}"
            return r.status_code == 200

        try:
            wait_until(ready, timeout=timeout, interval=0.05, what=f"{self.name} to be ready")
        except WaitTimeout:
            raise RuntimeError(f"{self.name} not ready after {timeout}s ({last}):\n{self.log()}"
                               ) from None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self, ready_path: str = "/readyz") -> None:
        """Stop (if running) and start again on the same port and databases."""
        self.stop()
        self.launch()
        self.wait_ready(ready_path)

    def close(self) -> None:
        self.stop()
        self.client.close()


class Services:
    """Starts services for one test in one data directory; `close()` stops them all."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.started: list[ServiceProc] = []

    def env(self, *, faults: bool = True, pg: tuple[str, str] | None = None,
            extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
        env.update({
            "LABKIT_HOST": "127.0.0.1",
            "LABKIT_DATA_DIR": str(self.data_dir),
            "LABKIT_EVENTS_DB": str(self.data_dir / "events.db"),
            "LABKIT_READ_DB": str(self.data_dir / "read.db"),
            "LABKIT_FAULTS": "1" if faults else "0",
            "LABKIT_ADMIN_TOKEN": ADMIN_TOKEN,
            "PYTHONUNBUFFERED": "1",
        })
        if pg is not None:
            env["LABKIT_PG_URL"], env["LABKIT_PG_SCHEMA"] = pg
        env.update(extra or {})
        return env

    def spawn(self, name: str, *, faults: bool = True, pg: tuple[str, str] | None = None,
              env: dict[str, str] | None = None) -> ServiceProc:
        """Launch without waiting (to start several at once); then call `wait_ready()`."""
        port = free_port(self.data_dir)
        full = self.env(faults=faults, pg=pg, extra=env)
        full["LABKIT_PORT"] = str(port)
        label = name.rsplit(".", 1)[-1]
        svc = ServiceProc(name, module_of(name), port, full,
                          self.data_dir / f"{label}-{port}.log")
        self.started.append(svc)
        svc.launch()
        return svc

    def start(self, name: str, *, faults: bool = True, pg: tuple[str, str] | None = None,
              env: dict[str, str] | None = None, ready_path: str = "/readyz") -> ServiceProc:
        """Launch and wait until ready (retrying once if the free port was taken meanwhile)."""
        for attempt in range(3):
            svc = self.spawn(name, faults=faults, pg=pg, env=env)
            try:
                svc.wait_ready(ready_path)
                return svc
            except RuntimeError:
                if attempt == 2 or "address already in use" not in svc.log().lower():
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for svc in self.started:
            svc.close()
        self.started.clear()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    data = tmp_path / "labkit-data"
    data.mkdir(exist_ok=True)
    s = Services(data)
    try:
        yield s
    finally:
        s.close()
