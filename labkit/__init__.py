"""labkit: the helper package of the advanced microservice patterns workbook.

    import labkit
    lab = labkit.connect()      # LABKIT_MODE=local (default) or cluster
    lab.up()

The system the lab deploys is the `ecommerce` package; labkit runs it (locally or on a
cluster), drives it, checks it and plots it. Its sub-packages, inner to outer:

- `runtime`: the local processes and the Kubernetes cluster behind one interface.
- `lab`: `Lab`, the one object notebooks use.
- `workbook`: scenarios, the saga client, widgets, plots, figures, checks.
- `ops`: validate, doctor, invariants, chaos, image; `bench`: the benchmarks.
- `cli`: the `labkit` command.

The names below are imported lazily (PEP 562), so `import labkit` costs nothing until used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.lab import Lab, LabError, connect

from ecommerce import __version__  # one version for the system and the helper

__all__ = ["Lab", "LabError", "__version__", "connect"]

_LAZY = {"Lab": "labkit.lab", "LabError": "labkit.lab", "connect": "labkit.lab"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
