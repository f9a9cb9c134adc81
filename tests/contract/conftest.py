"""Fixtures: a recording fake API server and a `ClusterRuntime` that reaches it through the real
`kubernetes` client (a kubeconfig pointing at it), so every call crosses the wire."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from labkit.runtime.cluster import ClusterRuntime
from tests.contract.fake_apiserver import FakeApiServer, kubeconfig


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    import sys

    from kubernetes.config import kube_config

    # client and server share one process: hand the GIL over quickly on each request
    monkeypatch.setattr(sys, "getswitchinterval", sys.getswitchinterval)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    monkeypatch.setattr(sys, "setswitchinterval", sys.setswitchinterval)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the dynamic client's discovery cache
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # never the in-cluster config
    with FakeApiServer() as srv:
        path = kubeconfig(srv.url, str(tmp_path / "kubeconfig"))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
        monkeypatch.setenv("KUBECONFIG", path)
        try:
            yield srv
        finally:
            sys.setswitchinterval(interval)


@pytest.fixture
def runtime(server: FakeApiServer) -> Iterator[ClusterRuntime]:
    lines: list[str] = []
    rt = ClusterRuntime("ecommerce-microservices", progress=False, echo=lines.append,
                        poll_interval=0.01)
    rt.echoed = lines  # type: ignore[attr-defined]
    yield rt
    rt.close()


@pytest.fixture
def installed(server: FakeApiServer) -> FakeApiServer:
    """The whole lab already applied (straight into the fake's store, no requests recorded)."""
    from labkit.runtime import manifests as m

    for step in m.STEPS:
        for obj in m.plan(m.load_step(step)):
            server.put(obj)
    return server
