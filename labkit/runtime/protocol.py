"""What the workbook asks of wherever the lab runs: the `Runtime` protocol.

Two runtimes implement it: `LocalRuntime` (every service a process on 127.0.0.1,
`labkit.runtime.local`) and `ClusterRuntime` (the manifests applied to a Kubernetes cluster,
`labkit.runtime.cluster`). `Lab.runtime` is typed with it, so code that works in both modes
uses only these methods; what exists in one mode only (local: restart one process with a
change on top, run a task in-process; cluster: the Kubernetes API) is reached through
`Lab`, which says in one sentence what to do instead in the other mode.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Runtime(Protocol):
    def up(self, *, wait: bool = True) -> object:
        """Start what is not running (apply the manifests) and, with `wait`, wait until ready."""

    def down(self) -> list[str]:
        """Stop exactly what the lab started; what was stopped or deleted. Idempotent."""

    def status(self) -> list[dict[str, Any]]:
        """One row per process or workload: its name, state and course step."""

    def url(self, name: str, /) -> str:
        """A service's base URL reachable from here; `"gateway"`: the single entry point."""

    def logs(self, name: str, /, tail: int = 200) -> str:
        """The last `tail` lines a service wrote."""

    def kill(self, name: str, /) -> object:
        """Kill a service's process (local) or pods (cluster): the crash scenarios."""
