"""Read-model writes: what a projection asks for, as plain data.

A projection is a pure function `event -> list[Write]`. The projector folds a batch of writes
per document (`WriteBuffer`) before the read store applies them in one transaction, so a replay
touches each document once per batch instead of once per event. Folding never changes the
result: applying the folded writes equals applying the writes one by one.
"""

from __future__ import annotations

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
        ident = (w.collection, w.key)
        if isinstance(w, Put):
            self.docs[ident] = Folded(w.collection, w.key, w.order, w.doc)
        elif isinstance(w, Delete):
            self.docs[ident] = Folded(w.collection, w.key, 0, None, True)
        elif isinstance(w, Merge):
            self._merge(ident, w)
        else:
            self._incr(ident, w)

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
        add = self.add
        for w in writes:
            add(w)

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
