"""Live cluster tests (opt-in: `pytest -m cluster tests/cluster`); see "Cluster mode" in README.md.

They apply the whole lab to the current kubeconfig context, drive it through the gateway and
then delete it. Run them against a throwaway cluster (e.g. the course's kind cluster), as a user
who may create namespaces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from labkit.runtime.cluster import ClusterRuntime


@pytest.fixture(scope="session")
def rt() -> Iterator[ClusterRuntime]:
    runtime = ClusterRuntime(namespace=os.environ.get("LABKIT_NAMESPACE") or None)
    failed = [c for c in runtime.doctor() if c.ok is False]
    if failed:
        pytest.fail("the cluster is not ready for the lab:\n" + "\n".join(
            f"- {c.check}: {c.message}" for c in failed))
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def lab_up(rt: ClusterRuntime) -> Iterator[ClusterRuntime]:
    """The whole lab applied and ready; deleted (and checked gone) at the end."""
    rt.up(timeout=float(os.environ.get("LABKIT_UP_TIMEOUT", "900")))
    try:
        yield rt
    finally:
        rt.down(timeout=300)
