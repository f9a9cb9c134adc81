"""The gateway's port: LABKIT_GATEWAY_PORT, and a clear answer when it is taken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from labkit.runtime.local import LocalRuntime, RuntimeErrorWithHint
from tests.integration.labs import lab_settings


def test_a_taken_gateway_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        rt = LocalRuntime(lab_settings(tmp_path), gateway_port=port)
        try:
            with pytest.raises(RuntimeErrorWithHint) as err:
                rt.up(progress=False, step="02-saga")
            message = str(err.value)
            assert f"port {port} for the gateway is taken" in message
            assert "LABKIT_GATEWAY_PORT=8081 labkit up" in message
            assert all(r["status"] == "not started" for r in rt.status())
        finally:
            rt.down()


def test_the_gateway_port_comes_from_the_environment(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LABKIT_GATEWAY_PORT", str(port))
    rt = LocalRuntime(lab_settings(tmp_path), ["gateway"])
    try:
        rows = rt.up(progress=False)
        assert rows[0]["url"] == f"http://127.0.0.1:{port}" and rows[0]["status"] == "ready"
        assert rt.url("gateway") == f"http://127.0.0.1:{port}"
    finally:
        rt.down()
    monkeypatch.setenv("LABKIT_GATEWAY_PORT", "http")
    with pytest.raises(RuntimeErrorWithHint, match="must be a port number"):
        LocalRuntime(lab_settings(tmp_path), ["gateway"]).up(progress=False)
