"""Ports a local lab keeps for its services, claimed machine-wide so two labs never share one.

A lab chooses every service's port when it first starts, also for the services of later steps
(a peer's address is known before it runs, like a Service's DNS name). Until such a service
starts, nothing listens on its port, so the kernel may hand the same port to another lab on
the machine (a test run beside the notebooks, a second lab), and the first lab's service then
finds it "taken by another program". CI saw exactly that: two labs, four shared ports.

So a port is claimed before a lab keeps it: one file per port in a per-user directory
(`<tmp>/labkit-ports-<uid>/<port>`, created with O_EXCL), holding the claiming lab's data
directory. A claim holds while it is fresh (`FRESH` s, the time between choosing and
recording ports), and after that while the claiming lab's `runtime.json` still lists the port.
Anything else is stale and may be claimed again. A registry that cannot be used (no /tmp, no
permission) claims nothing and refuses nothing: the lab then picks ports as before.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

#: Seconds a new claim holds even though the claiming lab has not recorded the port yet.
FRESH = 120.0


def registry() -> Path:
    return Path(tempfile.gettempdir()) / f"labkit-ports-{os.getuid()}"


def kernel_free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick(owner: Path, avoid: Collection[int] = ()) -> int:
    """A free port that no other lab has claimed, claimed for `owner` (a data directory)."""
    for _ in range(500):
        port = kernel_free_port()
        if port not in avoid and claim(port, owner):
            return port
    raise RuntimeError("no free port could be claimed: too many labs on this machine?")


def claim(port: int, owner: Path) -> bool:
    """Claim `port` for `owner`; False while another lab's claim on it holds."""
    mine = str(Path(owner).resolve())
    try:
        directory = registry()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / str(port)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            holder = _holder(path)
            if holder != mine and _holds(path, holder, port):
                return False
            tmp = path.with_name(f".{port}.{os.getpid()}")
            tmp.write_text(mine)
            tmp.replace(path)
            return _holder(path) == mine  # two labs taking a stale claim: one wins
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return True
    except OSError:  # no usable registry: behave as without one
        return True


def _holder(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _holds(path: Path, holder: str | None, port: int) -> bool:
    """Does `holder`'s claim on `port` still hold?"""
    if holder is None:
        return False
    try:
        if time.time() - path.stat().st_mtime < FRESH:
            return True
        state = json.loads((Path(holder) / "runtime.json").read_text())
    except (OSError, ValueError):
        return False
    ports = state.get("ports") if isinstance(state, dict) else None
    return isinstance(ports, dict) and port in ports.values()


def release(owner: Path) -> int:
    """Drop every claim `owner` holds (its data directory is being deleted); how many."""
    mine = str(Path(owner).resolve())
    dropped = 0
    try:
        for path in registry().iterdir():
            if path.name.isdigit() and _holder(path) == mine:
                path.unlink(missing_ok=True)
                dropped += 1
    except OSError:
        pass
    return dropped
