"""Fault injection and the admin commands are off unless asked for, and never routed (issue 11)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from ecommerce.config import Settings
from labkit.runtime import manifests as m
from labkit.runtime.cluster import customise
from labkit.runtime.local import ADMIN_TOKEN_FILE, LocalRuntime, launch_specs
from labkit.runtime.routes import load_routes, match


def _runtime(tmp_path: Path, **changes: object) -> LocalRuntime:
    settings = replace(Settings.from_env(), data_dir=tmp_path, events_db=tmp_path / "e.db",
                       read_db=tmp_path / "r.db", **changes)
    return LocalRuntime(settings)


def test_the_local_runtime_passes_faults_through_and_leaves_them_off(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    spec = launch_specs(["payment-service"])["payment-service"]
    assert "LABKIT_FAULTS" not in spec.env or spec.env["LABKIT_FAULTS"] == "0"
    assert rt.environment(spec, {})["LABKIT_FAULTS"] == "0"
    assert rt.environment(spec, {}, faults=True)["LABKIT_FAULTS"] == "1"


def test_the_local_admin_token_is_made_once_and_private(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    spec = launch_specs(["inventory-service"])["inventory-service"]
    token = rt.environment(spec, {})["LABKIT_ADMIN_TOKEN"]
    assert len(token) >= 32 and rt.admin_token() == token
    mode = stat.S_IMODE(os.stat(tmp_path / ADMIN_TOKEN_FILE).st_mode)
    assert mode == 0o600
    assert _runtime(tmp_path, admin_token="mine").environment(spec, {})["LABKIT_ADMIN_TOKEN"] == "mine"


def test_the_manifests_leave_faults_off_and_the_switch_turns_them_on() -> None:
    objs = m.load_step("02-saga") + m.load_step("03-cqrs")

    def faults(objects: list) -> set[str]:
        return {var["value"] for o in objects if (t := m.pod_template(o)) is not None
                for c in t["spec"]["containers"] for var in c.get("env") or []
                if var["name"] == "LABKIT_FAULTS"}

    assert faults(objs) == {"0"}
    assert faults(customise(objs, faults=True)) == {"1"}
    assert faults(objs) == {"0"}  # customise works on copies


def test_no_gateway_route_reaches_admin_commands_or_faults() -> None:
    routes = load_routes()
    for path in ("/admin/payments/accounts/a/fund", "/admin/inventory/MOUSE-WL/restock",
                 "/faults"):
        for host in (None, "api.local"):
            assert match(routes, host, path) is None, (host, path)
    assert match(routes, None, "/api/payments/o-1/refund") is not None
