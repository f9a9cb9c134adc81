"""Both runtimes are a `Runtime`; what one mode has only says so in the other mode."""

from __future__ import annotations

import pytest

from labkit.lab import Lab, LabError
from labkit.runtime.cluster import ClusterRuntime
from labkit.runtime.local import LocalRuntime
from labkit.runtime.protocol import Runtime


def test_local_and_cluster_runtimes_implement_the_protocol():
    assert issubclass(LocalRuntime, Runtime)
    assert issubclass(ClusterRuntime, Runtime)


def test_a_cluster_lab_refuses_local_only_features_in_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_MODE", "cluster")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    lab = Lab()
    assert isinstance(lab.runtime, ClusterRuntime)  # no cluster is contacted to build it
    assert lab.cluster_runtime("lab.run_job") is lab.runtime
    with pytest.raises(LabError, match=r"lab\.restart needs local mode"):
        lab.local_runtime("lab.restart")


def test_a_local_lab_refuses_cluster_only_features(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_MODE", "local")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    lab = Lab(gateway_port=0)
    assert lab.local_runtime("lab.restart") is lab.runtime
    with pytest.raises(LabError, match="the cleanup check needs cluster mode"):
        lab.cluster_runtime("the cleanup check")
