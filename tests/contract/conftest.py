"""Fixtures: a recording fake API server and a `ClusterRuntime` that reaches it through the real
`kubernetes` client (a kubeconfig pointing at it), so every call crosses the wire."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from labkit.runtime.cluster import ClusterRuntime  # noqa: E402
from tests.contract.fake_apiserver import FakeApiServer, kubeconfig  # noqa: E402


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    from kubernetes.config import kube_config

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the dynamic client's discovery cache
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # never the in-cluster config
    with FakeApiServer() as srv:
        path = kubeconfig(srv.url, str(tmp_path / "kubeconfig"))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
        monkeypatch.setenv("KUBECONFIG", path)
        yield srv


@pytest.fixture
def runtime(server: FakeApiServer) -> Iterator[ClusterRuntime]:
    lines: list[str] = []
    rt = ClusterRuntime("ecommerce-microservices", progress=False, echo=lines.append,
                        poll_interval=0.01)
    rt.echoed = lines  # type: ignore[attr-defined]
    yield rt
    rt.close()
