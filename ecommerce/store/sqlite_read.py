"""The embedded read store: documents as JSON in one SQLite table, checkpoints beside them.

Writes and checkpoints share one `BEGIN IMMEDIATE` transaction. Collections live under a
physical name (`live` maps a collection to it; no row: its own name), so a replay builds a
new generation beside the live one and swaps it in with one small transaction (see
`ecommerce.store.read_base`). Readers resolve the physical name inside their statement, so each
answer comes from one generation.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecommerce.domain.events import compact_dumps, iso_utc
from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.store.read_base import (
    GEN_SEP,
    Checkpoint,
    CheckpointConflict,
    ReadStore,
    SourceMismatch,
    physical,
)
from ecommerce.store.sqlite_util import DEFAULT_AUTOCHECKPOINT, SqliteConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    doc        TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_by_order ON docs (collection, ord, key);
CREATE TABLE IF NOT EXISTS checkpoints (
    projection TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS live (
    collection TEXT PRIMARY KEY,
    physical   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staging (
    gen         TEXT PRIMARY KEY,
    collections TEXT NOT NULL,
    touched     REAL NOT NULL
);
"""

#: The physical name of a live collection, resolved inside the statement that reads it.
_LIVE = "COALESCE((SELECT physical FROM live WHERE collection = ?), ?)"
#: WAL pages between checkpoints while a replay builds a generation (16 MiB; SQLite: 4 MiB):
#: fewer, larger checkpoints, each of which syncs the disk.
BUILD_AUTOCHECKPOINT = 4096
#: Rows deleted per transaction when a generation is dropped (writers wait at most that long).
DROP_CHUNK = 5000

_dumps = compact_dumps


def _source_key(gen: str | None) -> str:
    return "source" if gen is None else physical("source", gen)


class SqliteReadStore(ReadStore):
    backend = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._conns = SqliteConnections(self.path, synchronous)
        self._conns.init(SCHEMA)

    # ---- writing ------------------------------------------------------------------------------
    def _physicals(self, conn: sqlite3.Connection, collections: set[str],
                   gen: str | None) -> dict[str, str]:
        if gen is not None:
            return {c: physical(c, gen) for c in collections}
        live = dict(conn.execute("SELECT collection, physical FROM live"))
        return {c: live.get(c, c) for c in collections}

    def _commit(self, buffer: WriteBuffer, checkpoints: Mapping[str, int],
                expected: Mapping[str, int], source: str | None, gen: str | None) -> None:
        conn = self._conns.get()
        cp_name = (lambda p: p) if gen is None else (lambda p: physical(p, gen))
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored = dict(conn.execute(
                "SELECT projection, position FROM checkpoints WHERE projection IN "
                f"({','.join('?' * len(expected))})", [cp_name(p) for p in expected],
            )) if expected else {}
            for name, want in expected.items():
                if stored.get(cp_name(name), 0) != want:
                    raise CheckpointConflict(
                        f"checkpoint of {name!r} is {stored.get(cp_name(name), 0)}, expected {want}"
                    )
            if source is not None:
                key = _source_key(gen)
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, source))
                elif row[0] != source:
                    raise SourceMismatch(row[0], source)
            folded = buffer.docs.values()
            phys = self._physicals(conn, {f.collection for f in folded}, gen)
            # Whole documents (the usual case), each encoded once per batch; then the rest.
            puts = [(phys[f.collection], f.key, _dumps(f.doc), f.order)
                    for f in folded if f.doc is not None]
            deletes, partial = [], []
            if len(puts) < len(folded):
                for f in folded:
                    if f.deleted:
                        deletes.append((phys[f.collection], f.key))
                    elif f.doc is None:
                        partial.append((phys[f.collection], f))
            if deletes:
                conn.executemany("DELETE FROM docs WHERE collection = ? AND key = ?", deletes)
            if puts:
                conn.executemany(
                    "INSERT INTO docs (collection, key, doc, ord) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc, "
                    "ord = excluded.ord",
                    puts,
                )
            if partial:
                current = self._fetch_many(conn, [(c, f.key) for c, f in partial])
                rows = []
                for c, f in partial:
                    doc = current.get((c, f.key), {})
                    if f.fields:
                        doc.update(f.fields)
                    for name, by in (f.incrs or {}).items():
                        doc[name] = (doc.get(name) or 0) + by
                    rows.append((c, f.key, _dumps(doc), f.order))
                conn.executemany(
                    "INSERT INTO docs (collection, key, doc, ord) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc",
                    rows,
                )
            now = iso_utc()
            conn.executemany(
                "INSERT INTO checkpoints (projection, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (projection) DO UPDATE SET position = excluded.position, "
                "updated_at = excluded.updated_at",
                [(cp_name(name), pos, now) for name, pos in checkpoints.items()],
            )
            if gen is not None:
                conn.execute("UPDATE staging SET touched = ? WHERE gen = ?", (time.time(), gen))
            # A rebuild (a staged generation) checkpoints the WAL every 16 MiB, not every 4.
            self._conns.autocheckpoint(conn, DEFAULT_AUTOCHECKPOINT if gen is None
                                       else BUILD_AUTOCHECKPOINT)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _fetch_many(conn: sqlite3.Connection, keys: list[tuple[str, str]]
                    ) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            where = " OR ".join(["(collection = ? AND key = ?)"] * len(chunk))
            args = [x for pair in chunk for x in pair]
            for c, k, doc in conn.execute(f"SELECT collection, key, doc FROM docs WHERE {where}", args):
                out[(c, k)] = json.loads(doc)
        return out

    # ---- generations --------------------------------------------------------------------------
    def _stage(self, gen: str, source: str | None, collections: Sequence[str]) -> None:
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO staging (gen, collections, touched) VALUES (?, ?, ?)",
                         (gen, json.dumps(list(collections)), time.time()))
            if source is not None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (_source_key(gen), source))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _stale(self, older_than: float) -> dict[str, list[str]]:
        rows = self._conns.get().execute("SELECT gen, collections FROM staging WHERE touched < ?",
                                         (time.time() - older_than,))
        return {gen: json.loads(cols) for gen, cols in rows}

    def _swap(self, gen: str, collections: Sequence[str], projections: Sequence[str],
              note: str | None) -> list[str]:
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            live = dict(conn.execute("SELECT collection, physical FROM live"))
            old = [live.get(c, c) for c in collections]
            conn.executemany("INSERT OR REPLACE INTO live (collection, physical) VALUES (?, ?)",
                             [(c, physical(c, gen)) for c in collections])
            conn.executemany("DELETE FROM checkpoints WHERE projection = ?",
                             [(p,) for p in projections])
            conn.executemany("UPDATE checkpoints SET projection = ? WHERE projection = ?",
                             [(p, physical(p, gen)) for p in projections])
            row = conn.execute("SELECT value FROM meta WHERE key = ?",
                               (_source_key(gen),)).fetchone()
            if row is not None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('source', ?)", row)
                conn.execute("DELETE FROM meta WHERE key = ?", (_source_key(gen),))
            if note is None:
                conn.execute("DELETE FROM meta WHERE key = 'note'")
            else:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('note', ?)", (note,))
            conn.execute("DELETE FROM staging WHERE gen = ?", (gen,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return old

    def _drop(self, physicals: Sequence[str], gen: str | None) -> None:
        conn = self._conns.get()
        for c in physicals:
            while conn.execute(
                "DELETE FROM docs WHERE collection = ? AND key IN "
                "(SELECT key FROM docs WHERE collection = ? LIMIT ?)", (c, c, DROP_CHUNK),
            ).rowcount:
                pass
        if gen is not None:
            conn.execute("DELETE FROM checkpoints WHERE projection LIKE ?",
                         (f"%{GEN_SEP}{gen}",))
            conn.execute("DELETE FROM meta WHERE key = ?", (_source_key(gen),))
            conn.execute("DELETE FROM staging WHERE gen = ?", (gen,))

    # ---- reading ------------------------------------------------------------------------------
    def _checkpoints(self, gen: str | None) -> dict[str, Checkpoint]:
        rows = self._conns.get().execute("SELECT projection, position, updated_at FROM checkpoints")
        out = {}
        suffix = None if gen is None else f"{GEN_SEP}{gen}"
        for p, pos, at in rows:
            if suffix is None:
                if GEN_SEP not in p:
                    out[p] = Checkpoint(p, pos, at)
            elif p.endswith(suffix):
                name = p[: -len(suffix)]
                out[name] = Checkpoint(name, pos, at)
        return out

    def _where(self, collection: str, gen: str | None) -> tuple[str, tuple[str, ...]]:
        if gen is None:
            return f"collection = {_LIVE}", (collection, collection)
        return "collection = ?", (physical(collection, gen),)

    def _get(self, collection: str, key: str, gen: str | None) -> dict[str, Any] | None:
        where, args = self._where(collection, gen)
        row = self._conns.get().execute(
            f"SELECT doc FROM docs WHERE {where} AND key = ?", (*args, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def _list(self, collection: str, limit: int | None, offset: int,
              gen: str | None) -> list[dict[str, Any]]:
        where, args = self._where(collection, gen)
        rows = self._conns.get().execute(
            f"SELECT key, doc FROM docs WHERE {where} ORDER BY ord, key LIMIT ? OFFSET ?",
            (*args, -1 if limit is None else limit, offset),
        )
        return [{**json.loads(doc), "_key": key} for key, doc in rows]

    def _count(self, collection: str, gen: str | None) -> int:
        where, args = self._where(collection, gen)
        return int(self._conns.get().execute(f"SELECT COUNT(*) FROM docs WHERE {where}",
                                             args).fetchone()[0])

    def _source(self, gen: str | None) -> str | None:
        row = self._conns.get().execute("SELECT value FROM meta WHERE key = ?",
                                        (_source_key(gen),)).fetchone()
        return row[0] if row else None

    def note(self) -> str | None:
        row = self._conns.get().execute("SELECT value FROM meta WHERE key = 'note'").fetchone()
        return row[0] if row else None

    def ping(self) -> None:
        self._conns.get().execute("SELECT 1")

    def close(self) -> None:
        self._conns.close()
