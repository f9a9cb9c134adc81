"""The embedded read store: documents as JSON in one SQLite table, checkpoints beside them.

Writes and checkpoints share one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.store.read_base import Checkpoint, CheckpointConflict, ReadStore
from ecommerce.store.sqlite_util import SqliteConnections

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
"""

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class SqliteReadStore(ReadStore):
    backend = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._conns = SqliteConnections(self.path, synchronous)
        self._conns.get().executescript(SCHEMA)

    def commit(
        self, buffer: WriteBuffer, checkpoints: Mapping[str, int], expected: Mapping[str, int]
    ) -> None:
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored = dict(conn.execute("SELECT projection, position FROM checkpoints"))
            for name, want in expected.items():
                if stored.get(name, 0) != want:
                    raise CheckpointConflict(
                        f"checkpoint of {name!r} is {stored.get(name, 0)}, expected {want}"
                    )
            puts, deletes, partial = [], [], []
            for f in buffer.docs.values():
                if f.deleted:
                    deletes.append((f.collection, f.key))
                elif f.doc is not None:
                    puts.append((f.collection, f.key, _dumps(f.doc), f.order))
                else:
                    partial.append(f)
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
                keys = [(f.collection, f.key) for f in partial]
                current = self._fetch_many(conn, keys)
                rows = []
                for f in partial:
                    doc = current.get((f.collection, f.key), {})
                    if f.fields:
                        doc.update(f.fields)
                    for name, by in (f.incrs or {}).items():
                        doc[name] = (doc.get(name) or 0) + by
                    rows.append((f.collection, f.key, _dumps(doc), f.order))
                conn.executemany(
                    "INSERT INTO docs (collection, key, doc, ord) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc",
                    rows,
                )
            now = datetime.now(UTC).isoformat()
            conn.executemany(
                "INSERT INTO checkpoints (projection, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (projection) DO UPDATE SET position = excluded.position, "
                "updated_at = excluded.updated_at",
                [(name, pos, now) for name, pos in checkpoints.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _fetch_many(conn, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            where = " OR ".join(["(collection = ? AND key = ?)"] * len(chunk))
            args = [x for pair in chunk for x in pair]
            for c, k, doc in conn.execute(f"SELECT collection, key, doc FROM docs WHERE {where}", args):
                out[(c, k)] = json.loads(doc)
        return out

    def checkpoints(self) -> dict[str, Checkpoint]:
        rows = self._conns.get().execute("SELECT projection, position, updated_at FROM checkpoints")
        return {p: Checkpoint(p, pos, at) for p, pos, at in rows}

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        row = self._conns.get().execute(
            "SELECT doc FROM docs WHERE collection = ? AND key = ?", (collection, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, collection: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        rows = self._conns.get().execute(
            "SELECT key, doc FROM docs WHERE collection = ? ORDER BY ord, key LIMIT ? OFFSET ?",
            (collection, -1 if limit is None else limit, offset),
        )
        return [{**json.loads(doc), "_key": key} for key, doc in rows]

    def count(self, collection: str) -> int:
        return self._conns.get().execute(
            "SELECT COUNT(*) FROM docs WHERE collection = ?", (collection,)
        ).fetchone()[0]

    def reset(self, collections: list[str], projections: list[str]) -> None:
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM docs WHERE collection = ?", [(c,) for c in collections])
            conn.executemany("DELETE FROM checkpoints WHERE projection = ?", [(p,) for p in projections])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def ping(self) -> None:
        self._conns.get().execute("SELECT 1")

    def close(self) -> None:
        self._conns.close()
