"""`labkit up --step` builds the lab up as the course does, one step at a time (local mode).

One data directory, the steps in order: after each, exactly that step's processes and the
earlier ones run, and the gateway says which step starts a service that is not there yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labkit.cli import main
from labkit.lab import Lab, LabError
from labkit.runtime.manifests import STEPS
from labkit.runtime.steps import processes_for
from tests.integration.labs import lab_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data))
    monkeypatch.setenv("LABKIT_GATEWAY_PORT", "0")  # never the student's 8080
    for var in ("LABKIT_PG_URL", "LABKIT_REDIS_URL", "LABKIT_MODE"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield data
    finally:
        main(["reset"])


def _running(lab: Lab) -> set[str]:
    return {r["service"] for r in lab.runtime.status() if r["status"] in ("ready", "running")}


def test_up_step_by_step_starts_each_step_and_the_ones_before(env: Path, capsys) -> None:
    lab = Lab()
    expect_gateway = {  # a request through the gateway after each step: (path, method, status)
        "01-networking": ("/api/users", "GET", 503),
        "02-saga": ("/api/users", "GET", 200),
        "03-cqrs": ("/api/commands/create-user", "POST", 422),
        "04-event-sourcing": ("/api/events", "GET", 200),
    }
    for step in STEPS:
        assert main(["up", "--step", step, "--quiet"]) == 0
        out = capsys.readouterr().out
        assert f"steps up to {step} ready" in out
        assert _running(lab) == set(processes_for(step)), step
        assert "SQLite" in out and "00-base" in out  # what stands for PostgreSQL and Redis
        if step == "00-base":
            with pytest.raises(Exception, match="belongs to step 01-networking"):
                lab.url("gateway")
            continue
        path, method, status = expect_gateway[step]
        answer = httpx.request(method, lab.url("gateway") + path, timeout=10)
        assert answer.status_code == status, (step, answer.text)
        if status == 503:  # the backend's step is not started yet: the answer says which
            assert "labkit up --step 02-saga" in answer.json()["detail"]
    assert main(["up", "--quiet"]) == 0  # no step: everything (all running already)
    assert _running(lab) == set(processes_for(None))


def test_lab_up_step_returns_what_that_step_runs(env: Path) -> None:
    lab = Lab(lab_settings(env), gateway_port=0)
    df = lab.up(step="01", progress=False)
    assert list(df["step"].unique()) == ["00-base", "01-networking"]
    assert set(df["service"]) == {"gateway", "postgres (event store)", "redis (read model)"}
    assert (df["status"] == "ready").all()
    with pytest.raises(LabError, match="unknown lab step '07'"):
        lab.up(step="07")
    full = lab.up(progress=False)  # no step: everything, as before
    assert {"gateway", "event-processor", "saga-orchestrator"} <= set(full["service"])
    assert (full["status"].isin(["ready", "running"])).all()
