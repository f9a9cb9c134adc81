"""The read store interface: documents in collections, plus projection checkpoints.

`commit(buffer, checkpoints, expected)` applies a batch of folded writes and moves the
projections' checkpoints in ONE atomic step, and only if the stored checkpoints still equal
`expected` (compare-and-set). Two projector processes can therefore never apply the same
event twice, and a projector killed mid-batch leaves the previous batch's state intact.

Generations: a rebuild never empties what readers see
------------------------------------------------------
Each collection is stored under a physical name; the *live* map says which one readers get
(none recorded: the collection's own name). A replay asks for a staging generation
(`stage`): fresh, empty physical collections and checkpoints of their own, next to the live
ones. It rebuilds into them (`Staged` is a ReadStore over the generation, so the ordinary
projector does the work), then `swap` makes them live, with their checkpoints, in one atomic
step, and drops the old generation afterwards. Until the swap, queries see the old model; from
the swap on, the new one. A projector following the log commits to the live generation; its
compare-and-set on the live checkpoints makes a commit that straddles a swap fail and retry
from the new checkpoints, so nothing is lost or applied twice.

The log a model was built from
------------------------------
The store also remembers the `source`: the id of the event log its model was built from
(`EventStore.log_id()`). A commit that names another log is refused (`SourceMismatch`): the
projector then knows the log was replaced and rebuilds instead of mixing two logs.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ecommerce.domain.readmodel import WriteBuffer

#: Separates a collection's (or projection's) name from its generation in physical names.
GEN_SEP = "~"
#: A staging generation that has not committed for this long belongs to a replay that died
#: (killed, its process stopped); the next `stage` drops it.
STALE_STAGING_S = 600.0


class CheckpointConflict(Exception):
    """Another projector moved a checkpoint first; reload checkpoints and retry the batch."""


class SourceMismatch(Exception):
    """The read model was built from another event log than the one being committed from."""

    def __init__(self, stored: str, given: str) -> None:
        self.stored, self.given = stored, given
        super().__init__(f"the read model was built from event log {stored[:12]}, but this "
                         f"batch comes from event log {given[:12]}")


@dataclass(frozen=True)
class Checkpoint:
    projection: str
    position: int
    updated_at: str | None  # ISO time of the last commit, None if never run


def new_generation() -> str:
    return uuid.uuid4().hex[:10]


def physical(name: str, gen: str) -> str:
    return f"{name}{GEN_SEP}{gen}"


class ReadStore(abc.ABC):
    """Backends implement the `_...` methods, where `gen=None` means the live generation."""

    backend: str = ""

    # ---- what backends implement --------------------------------------------------------------
    @abc.abstractmethod
    def _commit(self, buffer: WriteBuffer, checkpoints: Mapping[str, int],
                expected: Mapping[str, int], source: str | None, gen: str | None) -> None: ...

    @abc.abstractmethod
    def _checkpoints(self, gen: str | None) -> dict[str, Checkpoint]: ...

    @abc.abstractmethod
    def _get(self, collection: str, key: str, gen: str | None) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def _list(self, collection: str, limit: int | None, offset: int,
              gen: str | None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _count(self, collection: str, gen: str | None) -> int: ...

    @abc.abstractmethod
    def _source(self, gen: str | None) -> str | None: ...

    @abc.abstractmethod
    def _stage(self, gen: str, source: str | None, collections: Sequence[str]) -> None:
        """Register the generation (its collections, the time) and its source; its collections
        start empty. Each commit to it renews the time."""

    @abc.abstractmethod
    def _stale(self, older_than: float) -> dict[str, list[str]]:
        """Staging generations not committed to for `older_than` seconds: gen -> collections."""

    @abc.abstractmethod
    def _swap(self, gen: str, collections: Sequence[str], projections: Sequence[str],
              note: str | None) -> list[str]:
        """Make the generation live atomically; return the physical names it replaced."""

    @abc.abstractmethod
    def _drop(self, physicals: Sequence[str], gen: str | None) -> None:
        """Delete these physical collections (in chunks), and the generation's own records
        (checkpoints, source, registration)."""

    @abc.abstractmethod
    def note(self) -> str | None:
        """What the last automatic rebuild said (why and when), or None."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError if the store cannot be used."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # ---- the live model -----------------------------------------------------------------------
    def commit(
        self, buffer: WriteBuffer, checkpoints: Mapping[str, int], expected: Mapping[str, int],
        source: str | None = None,
    ) -> None:
        """Apply writes and set checkpoints atomically, if `expected` still holds.

        With `source` (the id of the log the batch was read from), also refuse the batch with
        `SourceMismatch` if the model was built from another log; a model without a source
        takes this one.
        """
        self._commit(buffer, checkpoints, expected, source, None)

    def checkpoints(self) -> dict[str, Checkpoint]:
        return self._checkpoints(None)

    def checkpoints_and_source(self) -> tuple[dict[str, Checkpoint], str | None]:
        """`checkpoints()` and `source()` together (a store may read both in one round trip)."""
        return self.checkpoints(), self.source()

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        return self._get(collection, key, None)

    def documents(self, collection: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Documents in `order`, then key."""
        return self._list(collection, limit, offset, None)

    def count(self, collection: str) -> int:
        return self._count(collection, None)

    def source(self) -> str | None:
        """The id of the event log the live model was built from (None: not known yet)."""
        return self._source(None)

    def checkpoint(self, projection: str) -> int:
        cp = self.checkpoints().get(projection)
        return cp.position if cp else 0

    def dump(self, collections: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Every document of the collections, for comparisons: {collection: {key: doc}}."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for c in collections:
            out[c] = {d["_key"]: {k: v for k, v in d.items() if k != "_key"} for d in self.documents(c)}
        return out

    # ---- rebuilding beside the live model -----------------------------------------------------
    def stage(self, collections: Sequence[str], projections: Sequence[str],
              source: str | None = None) -> Staged:
        """A new, empty generation of these collections and projections, built from `source`.

        Generations left behind by replays that died are dropped first."""
        for dead, cols in self._stale(STALE_STAGING_S).items():
            self._drop([physical(c, dead) for c in cols], dead)
        gen = new_generation()
        self._stage(gen, source, collections)
        return Staged(self, gen, tuple(collections), tuple(projections))

    def swap(self, staged: Staged, note: str | None = None) -> None:
        """`swap_in`, then drop the generation it replaced."""
        self.drop_replaced(self.swap_in(staged, note))

    def swap_in(self, staged: Staged, note: str | None = None) -> list[str]:
        """Make the staged generation live (documents, checkpoints, source) in one atomic step.
        Returns the physical collections it replaced, for `drop_replaced`. `note` (why an
        automatic rebuild happened) is kept for `/readyz`; None clears it."""
        return self._swap(staged.gen, staged.collections, staged.projections, note)

    def drop_replaced(self, physicals: Sequence[str]) -> None:
        """Delete the documents of generations that `swap_in` replaced (in chunks)."""
        self._drop(physicals, None)

    def discard(self, staged: Staged) -> None:
        """Throw a staged generation away (a replay that failed)."""
        self._drop([physical(c, staged.gen) for c in staged.collections], staged.gen)

    def reset(self, collections: list[str], projections: list[str]) -> None:
        """Empty the collections and drop the projections' checkpoints, atomically for readers
        (an empty generation is swapped in)."""
        self.swap(self.stage(collections, projections, None))

    def __enter__(self) -> ReadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Staged(ReadStore):
    """A staging generation seen as a read store of its own: what a replay projects into."""

    def __init__(self, base: ReadStore, gen: str, collections: tuple[str, ...],
                 projections: tuple[str, ...]) -> None:
        self.base, self.gen = base, gen
        self.collections, self.projections = collections, projections
        self.backend = base.backend

    def _commit(self, buffer: WriteBuffer, checkpoints: Mapping[str, int],
                expected: Mapping[str, int], source: str | None, gen: str | None) -> None:
        unknown = {w.collection for w in buffer.docs.values()} - set(self.collections)
        if unknown:
            raise ValueError(f"collections {sorted(unknown)} are not part of this rebuild")
        self.base._commit(buffer, checkpoints, expected, source, self.gen)

    def _checkpoints(self, gen: str | None) -> dict[str, Checkpoint]:
        return self.base._checkpoints(self.gen)

    def _get(self, collection: str, key: str, gen: str | None) -> dict[str, Any] | None:
        return self.base._get(collection, key, self.gen)

    def _list(self, collection: str, limit: int | None, offset: int,
              gen: str | None) -> list[dict[str, Any]]:
        return self.base._list(collection, limit, offset, self.gen)

    def _count(self, collection: str, gen: str | None) -> int:
        return self.base._count(collection, self.gen)

    def _source(self, gen: str | None) -> str | None:
        return self.base._source(self.gen)

    def _stage(self, gen: str, source: str | None, collections: Sequence[str]) -> None:
        raise NotImplementedError("a staged generation cannot stage another one")

    def _stale(self, older_than: float) -> dict[str, list[str]]:
        return {}

    def _swap(self, gen: str, collections: Sequence[str], projections: Sequence[str],
              note: str | None) -> list[str]:
        raise NotImplementedError("swap the staged generation through its base store")

    def _drop(self, physicals: Sequence[str], gen: str | None) -> None:
        raise NotImplementedError("discard the staged generation through its base store")

    def note(self) -> str | None:
        return None

    def ping(self) -> None:
        self.base.ping()

    def close(self) -> None:
        """The base store stays open: it belongs to the caller."""
