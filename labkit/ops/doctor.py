"""`lab.doctor()`: is this machine (and, in cluster mode, this cluster) ready for the lab?"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import sys
from typing import Any

from ecommerce.config import Settings, redact_url

PACKAGES = ("fastapi", "uvicorn", "httpx", "psycopg", "redis", "pandas", "matplotlib",
            "ipywidgets", "jupyterlab", "tqdm", "koreanize-matplotlib")
#: Only cluster mode needs these (`LABKIT_MODE=cluster make lab` installs them).
CLUSTER_PACKAGES = ("kubernetes",)


def local_checks(settings: Settings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(check: str, ok: bool | None, detail: str) -> None:
        rows.append({"check": check, "ok": ok, "detail": detail})

    v = sys.version_info
    add("python", v >= (3, 11), f"{v.major}.{v.minor}.{v.micro} (needs 3.11+)")
    missing = []
    for name in PACKAGES + (CLUSTER_PACKAGES if settings.mode == "cluster" else ()):
        try:
            md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
    add("packages", not missing, "all installed" if not missing else
        f"missing: {', '.join(missing)}; run `make lab` (it installs them"
        + ("; `LABKIT_MODE=cluster make lab` for cluster mode" if settings.mode == "cluster"
           else "") + ")")
    add("mode", True, f"{settings.mode} (LABKIT_MODE)")
    d = settings.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        writable = os.access(d, os.W_OK)
    except OSError:
        writable = False
    add("data directory", writable, f"{d}" + ("" if writable else " is not writable; set LABKIT_DATA_DIR"))
    if writable:
        free_gb = shutil.disk_usage(d).free / 2**30
        add("disk space", free_gb > 0.5, f"{free_gb:.1f} GiB free")
    add("event store", True, f"PostgreSQL {redact_url(settings.pg_url)}" if settings.pg_url
        else f"SQLite {settings.events_db}")
    add("read model", True, f"Redis {redact_url(settings.redis_url)}" if settings.redis_url
        else f"SQLite {settings.read_db}")
    try:
        from labkit.runtime.manifests import container_specs

        n = len(container_specs())
        add("manifests", n > 0, f"{n} containers declared under manifests/")
    except Exception as exc:
        add("manifests", False, f"cannot read manifests/: {exc}")
    return rows


def doctor(settings: Settings, runtime: Any) -> list[dict[str, Any]]:
    rows = local_checks(settings)
    if settings.mode == "cluster":
        rows += [{"check": c.check, "ok": c.ok, "detail": c.message} for c in runtime.doctor()]
    return rows
