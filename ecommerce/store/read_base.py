"""The read store interface: documents in collections, plus projection checkpoints.

`commit(buffer, checkpoints, expected)` applies a batch of folded writes and moves the
projections' checkpoints in ONE atomic step, and only if the stored checkpoints still equal
`expected` (compare-and-set). Two projector processes can therefore never apply the same
event twice, and a projector killed mid-batch leaves the previous batch's state intact.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ecommerce.domain.readmodel import WriteBuffer


class CheckpointConflict(Exception):
    """Another projector moved a checkpoint first; reload checkpoints and retry the batch."""


@dataclass(frozen=True)
class Checkpoint:
    projection: str
    position: int
    updated_at: str | None  # ISO time of the last commit, None if never run


class ReadStore(abc.ABC):
    backend: str = ""

    @abc.abstractmethod
    def commit(
        self, buffer: WriteBuffer, checkpoints: Mapping[str, int], expected: Mapping[str, int]
    ) -> None:
        """Apply writes and set checkpoints atomically, if `expected` still holds."""

    @abc.abstractmethod
    def checkpoints(self) -> dict[str, Checkpoint]: ...

    @abc.abstractmethod
    def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def list(self, collection: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Documents in `order`, then key."""

    @abc.abstractmethod
    def count(self, collection: str) -> int: ...

    @abc.abstractmethod
    def reset(self, collections: list[str], projections: list[str]) -> None:
        """Drop the collections and the projections' checkpoints, atomically."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError if the store cannot be used."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def checkpoint(self, projection: str) -> int:
        cp = self.checkpoints().get(projection)
        return cp.position if cp else 0

    def dump(self, collections: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Every document of the collections, for comparisons: {collection: {key: doc}}."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for c in collections:
            out[c] = {d["_key"]: {k: v for k, v in d.items() if k != "_key"} for d in self.list(c)}
        return out

    def __enter__(self) -> ReadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
