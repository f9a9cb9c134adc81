"""The embedded event store: one SQLite file in WAL mode.

Writers take SQLite's write lock with `BEGIN IMMEDIATE`, so appends are serialised and
positions are committed in order: a reader following `read_all` can never skip an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import starmap
from pathlib import Path

from labkit.domain.events import NewEvent, RecordedEvent, UpcasterRegistry
from labkit.store.base import (
    AppendResult,
    DuplicateEventError,
    EventStore,
    ExpectedVersion,
    check_expected,
    prepare_append,
)
from labkit.store.sqlite_util import SqliteConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
"""

# In RecordedEvent's argument order: rows become events directly (JSON and time decode lazily).
COLUMNS = "event_id, stream_id, version, position, type, schema_version, data, metadata, recorded_at"


class SqliteEventStore(EventStore):
    backend = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        registry: UpcasterRegistry | None = None,
    ) -> None:
        super().__init__(registry)
        self.path = Path(path)
        self._conns = SqliteConnections(self.path, synchronous)
        self._conns.get().executescript(SCHEMA)

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        stream, encoded, expected = prepare_append(stream_id, events, expected_version)
        conn = self._conns.get()
        ids = [e.id for e in encoded]
        conn.execute("BEGIN IMMEDIATE")
        try:
            marks = ",".join("?" * len(ids))
            found = conn.execute(
                f"SELECT position, stream_id, version FROM events WHERE event_id IN ({marks}) "
                "ORDER BY position",
                ids,
            ).fetchall()
            if found:
                conn.execute("ROLLBACK")
                return _already_stored(stream, ids, found)
            row = conn.execute(
                "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream,)
            ).fetchone()
            current = row[0] or 0
            check_expected(stream, expected, current)
            now = datetime.now(UTC).isoformat()
            positions = []
            for offset, e in enumerate(encoded, start=1):
                cur = conn.execute(
                    "INSERT INTO events (event_id, stream_id, version, type, schema_version, "
                    "data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.id, stream, current + offset, e.type, e.schema_version,
                     e.data_json, e.metadata_json, now),
                )
                positions.append(cur.lastrowid)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return AppendResult(stream, tuple(positions), current + len(encoded))

    def _read_stream(self, stream_id: str, from_version: int) -> list[RecordedEvent]:
        rows = self._conns.get().execute(
            f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? ORDER BY version",
            (stream_id, from_version),
        )
        return list(starmap(RecordedEvent, rows))

    def _read_all(
        self, after_position: int, limit: int, stream_prefix: str | None, types: Sequence[str] | None
    ) -> list[RecordedEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE position > ?"
        args: list[object] = [after_position]
        if stream_prefix:
            sql += " AND substr(stream_id, 1, ?) = ?"
            args += [len(stream_prefix), stream_prefix]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += list(types)
        sql += " ORDER BY position LIMIT ?"
        args.append(limit)
        return list(starmap(RecordedEvent, self._conns.get().execute(sql, args)))

    def stream_version(self, stream_id: str) -> int:
        row = self._conns.get().execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        return row[0] or 0

    def last_position(self) -> int:
        row = self._conns.get().execute("SELECT MAX(position) FROM events").fetchone()
        return row[0] or 0

    def stats(self) -> dict[str, object]:
        conn = self._conns.get()
        total, streams, last = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT stream_id), COALESCE(MAX(position), 0) FROM events"
        ).fetchone()
        by_type = dict(conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type"))
        return {"backend": self.backend, "location": str(self.path), "events": total,
                "streams": streams, "last_position": last, "by_type": by_type}

    def wipe(self) -> None:
        self._conns.get().execute("DELETE FROM events")

    def close(self) -> None:
        self._conns.close()


def _already_stored(stream: str, ids: list[str], found: list[tuple]) -> AppendResult:
    """An idempotent retry: every id stored already, in this stream, returns the originals."""
    if len(found) != len(ids) or any(s != stream for _, s, _ in found):
        raise DuplicateEventError(
            f"{len(found)} of the {len(ids)} event ids in this batch are already stored"
            + ("" if all(s == stream for _, s, _ in found) else " in another stream")
            + "; retry the exact original batch, or use new event ids"
        )
    return AppendResult(stream, tuple(p for p, _, _ in found), max(v for _, _, v in found),
                        written=False)
