"""Read-model writes: what a projection asks for, as plain data.

A projection is a pure function `event -> list[Write]`. The projector folds a batch of writes
per document (`WriteBuffer`) before the read store applies them in one transaction, so a replay
touches each document once per batch instead of once per event. Folding never changes the
result: applying the folded writes equals applying the writes one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple


class Put(NamedTuple):
    """Replace the document (create it if absent). `order` sorts documents in listings."""

    collection: str
    key: str
    doc: dict[str, Any]
    order: int = 0


class Merge(NamedTuple):
    """Set some fields, keep the others (create the document if absent)."""

    collection: str
    key: str
    fields: dict[str, Any]
    order: int = 0


class Incr(NamedTuple):
    """Add to numeric fields: `{"total": 1, "active": -1}` (missing fields count as 0)."""

    collection: str
    key: str
    by: dict[str, int]
    order: int = 0


class Delete(NamedTuple):
    collection: str
    key: str


Write = Put | Merge | Incr | Delete


@dataclass(slots=True)
class Folded:
    """The net effect of a batch's writes on one document.

    Exactly one shape: `deleted`; `doc` (full replacement, absent -> created); or a partial
    update: `fields` to set and `incrs` to add, applied to whatever is stored.
    """

    collection: str
    key: str
    order: int
    doc: dict[str, Any] | None = None
    deleted: bool = False
    fields: dict[str, Any] | None = None
    incrs: dict[str, int] | None = None


class WriteBuffer:
    """Folds writes per (collection, key), preserving the result of applying them in order.

    The buffer takes ownership of the dicts inside the writes it is given (projections build
    fresh ones for every event), so it can fold them in place without copying.
    """

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Folded] = {}

    def __len__(self) -> int:
        return len(self.docs)

    def add(self, w: Write) -> None:
        self.add_all((w,))

    def add_all(self, writes: Iterable[Write]) -> None:
        """`add` each write in order: the projector's call, once per handler. The common cases
        (a merge into a document already in the buffer, an increment of counters that are
        only being added to) are folded inline."""
        docs = self.docs
        for w in writes:
            kind = type(w)
            ident = (w.collection, w.key)
            if kind is Merge:
                cur = docs.get(ident)
                if cur is not None and cur.doc is not None:
                    cur.doc.update(w.fields)  # type: ignore[union-attr]
                else:
                    self._merge(ident, w)  # type: ignore[arg-type]
            elif kind is Incr:
                cur = docs.get(ident)
                if cur is not None and cur.fields is None and cur.incrs is not None:
                    incrs = cur.incrs  # neither deleted nor a whole document: counters only
                    for name, by in w.by.items():  # type: ignore[union-attr]
                        incrs[name] = incrs.get(name, 0) + by
                else:
                    self._incr(ident, w)  # type: ignore[arg-type]
            elif kind is Put:
                docs[ident] = Folded(w.collection, w.key, w.order, w.doc)  # type: ignore[union-attr]
            elif kind is Delete:
                docs[ident] = Folded(w.collection, w.key, 0, None, True)
            else:
                self._add_subclass(ident, w)

    def _add_subclass(self, ident: tuple[str, str], w: Write) -> None:
        """A write of a subclass of Put, Merge, Incr or Delete (`add_all` checks exact types)."""
        if isinstance(w, Put):
            self.docs[ident] = Folded(w.collection, w.key, w.order, w.doc)
        elif isinstance(w, Delete):
            self.docs[ident] = Folded(w.collection, w.key, 0, None, True)
        elif isinstance(w, Merge):
            self._merge(ident, w)
        elif isinstance(w, Incr):
            self._incr(ident, w)
        else:
            raise TypeError(f"a projection returned {w!r}; a write is a Put, Merge, Incr or "
                            "Delete (ecommerce.domain.readmodel)")

    def _merge(self, ident: tuple[str, str], w: Merge) -> None:
        cur = self.docs.get(ident)
        if cur is None:
            self.docs[ident] = Folded(w.collection, w.key, w.order, None, False, w.fields)
        elif cur.deleted:  # the document is gone: a merge starts it again from nothing
            self.docs[ident] = Folded(w.collection, w.key, w.order, w.fields)
        elif cur.doc is not None:
            cur.doc.update(w.fields)
        else:
            fields = cur.fields
            if fields is None:
                fields = cur.fields = {}
            fields.update(w.fields)
            if cur.incrs:
                for name in w.fields:
                    cur.incrs.pop(name, None)

    def _incr(self, ident: tuple[str, str], w: Incr) -> None:
        cur = self.docs.get(ident)
        if cur is None:
            self.docs[ident] = Folded(w.collection, w.key, w.order, None, False, None, dict(w.by))
        elif cur.deleted:  # the document is gone: an increment starts it again from nothing
            self.docs[ident] = Folded(w.collection, w.key, w.order, dict(w.by))
        elif cur.doc is not None:
            doc = cur.doc
            for name, by in w.by.items():
                doc[name] = (doc.get(name) or 0) + by
        else:
            fields = cur.fields
            incrs = cur.incrs
            for name, by in w.by.items():
                if fields is not None and name in fields:
                    fields[name] = (fields[name] or 0) + by
                else:
                    if incrs is None:
                        incrs = cur.incrs = {}
                    incrs[name] = incrs.get(name, 0) + by

    def extend(self, writes: list[Write]) -> None:
        self.add_all(writes)

    def clear(self) -> None:
        self.docs.clear()


def apply_to_dict(state: dict[tuple[str, str], dict[str, Any]], w: Write) -> None:
    """Reference semantics of one write on an in-memory model (used by tests and docs)."""
    ident = (w.collection, w.key)
    if isinstance(w, Put):
        state[ident] = dict(w.doc)
    elif isinstance(w, Delete):
        state.pop(ident, None)
    elif isinstance(w, Merge):
        state.setdefault(ident, {}).update(w.fields)
    else:
        doc = state.setdefault(ident, {})
        for name, by in w.by.items():
            doc[name] = (doc.get(name) or 0) + by
