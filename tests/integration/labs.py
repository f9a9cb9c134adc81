"""Start a real local lab (separate processes) in a temporary data directory, for tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ecommerce.config import Settings
from labkit.runtime.local import LocalRuntime, drop_server_data


def lab_settings(data_dir: Path, *, pg_url: str | None = None, redis_url: str | None = None,
                 tag: str | None = None) -> Settings:
    tag = tag or "t_" + uuid.uuid4().hex[:10]
    return replace(Settings.from_env(), mode="local", data_dir=data_dir,
                   events_db=data_dir / "events.db", read_db=data_dir / "read.db",
                   pg_url=pg_url, redis_url=redis_url, pg_schema=tag, redis_prefix=tag)


@contextlib.contextmanager
def running(settings: Settings, services: list[str] | None = None, *,
            faults: bool = False) -> Iterator[LocalRuntime]:
    """`faults`: fault injection (/faults) on, for the failure scenarios."""
    runtime = LocalRuntime(settings, services)
    try:
        runtime.up(progress=False, faults=faults)
        yield runtime
    finally:
        runtime.down()
        drop_server_data(settings)


@contextlib.contextmanager
def full_lab(data_dir: Path, *, faults: bool = False) -> Iterator[Any]:
    """The whole system (every service) as local processes; reset (stopped, data gone) after.
    `faults`: fault injection (/faults) on, for the failure scenarios."""
    from labkit.lab import Lab

    lab = Lab(lab_settings(data_dir))
    try:
        lab.up(progress=False, faults=faults)
        yield lab
    finally:
        lab.reset()
