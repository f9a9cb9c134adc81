"""The embedded event store: one SQLite file in WAL mode.

Writers take SQLite's write lock with `BEGIN IMMEDIATE`, so appends are serialised and
positions are committed in order: a reader following `read_all` can never skip an event.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from itertools import starmap
from pathlib import Path
from typing import cast

from ecommerce.domain.events import EncodedEvent, NewEvent, RecordedEvent, UpcasterRegistry, iso_utc
from ecommerce.store.base import (
    ANY,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    ExpectedVersion,
    prepare_append,
)
from ecommerce.store.sqlite_util import SqliteConnections

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
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_INSERT = (
    "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, "
    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Insert only if the stream is at the expected version (0: the stream must not exist).
_INSERT_AT_VERSION = (
    "INSERT INTO events (event_id, stream_id, version, type, schema_version, data, metadata, "
    "recorded_at) SELECT ?, ?, ?, ?, ?, ?, ?, ? "
    "WHERE ? = 0 OR EXISTS (SELECT 1 FROM events WHERE stream_id = ? AND version = ?)"
)

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
        self._conns.init(SCHEMA)
        self._conns.get().execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?)",
                                  (uuid.uuid4().hex,))

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        stream, encoded, expected = prepare_append(stream_id, events, expected_version)
        if expected == ANY:
            return self._append_any(stream, encoded)
        want = 0 if expected == NO_STREAM else expected
        conn = self._conns.get()
        now = iso_utc()
        first, rest = encoded[0], encoded[1:]
        positions: list[int] = []
        # The happy path is ONE statement for a one-event append (autocommit makes it its own
        # transaction): insert version want+1 only if the stream is at version `want`. The
        # unique indexes turn a taken version or an already-stored event id into an
        # IntegrityError, sorted out below, off the happy path.
        if rest:
            conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(_INSERT_AT_VERSION, (
                first.id, stream, want + 1, first.type, first.schema_version, first.data_json,
                first.metadata_json, now, want, stream, want))
            if cur.rowcount == 0:  # the stream is behind `want`
                if rest:
                    conn.execute("ROLLBACK")
                raise ConcurrencyError(stream, expected, self.stream_version(stream))
            positions.append(cast(int, cur.lastrowid))  # an INSERT always sets it
            for offset, e in enumerate(rest, start=2):
                cur = conn.execute(_INSERT, (e.id, stream, want + offset, e.type,
                                             e.schema_version, e.data_json, e.metadata_json, now))
                positions.append(cast(int, cur.lastrowid))  # an INSERT always sets it
            if rest:
                conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return self._explain_integrity_error(stream, encoded, expected)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return AppendResult(stream, tuple(positions), want + len(encoded), recorded_at=now)

    def _explain_integrity_error(self, stream: str, encoded: list[EncodedEvent], expected: ExpectedVersion
                                 ) -> AppendResult:
        """An idempotent retry (ids already stored) returns the originals; else a conflict."""
        ids = [e.id for e in encoded]
        found = self._find_ids(self._conns.get(), ids)
        if found:
            return _already_stored(stream, ids, found)
        raise ConcurrencyError(stream, expected, self.stream_version(stream))

    @staticmethod
    def _find_ids(conn: sqlite3.Connection, ids: list[str]) -> list[tuple[int, str, int]]:
        marks = ",".join("?" * len(ids))
        return conn.execute(
            f"SELECT position, stream_id, version FROM events WHERE event_id IN ({marks}) "
            "ORDER BY position", ids).fetchall()

    def _append_any(self, stream: str, encoded: list[EncodedEvent]) -> AppendResult:
        """expected_version 'any': read the current version inside the write transaction."""
        conn = self._conns.get()
        ids = [e.id for e in encoded]
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._find_ids(conn, ids)
            if found:
                conn.execute("ROLLBACK")
                return _already_stored(stream, ids, found)
            row = conn.execute(
                "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream,)
            ).fetchone()
            current = row[0] or 0
            now = iso_utc()
            positions: list[int] = []
            for offset, e in enumerate(encoded, start=1):
                cur = conn.execute(_INSERT, (e.id, stream, current + offset, e.type,
                                             e.schema_version, e.data_json, e.metadata_json, now))
                positions.append(cast(int, cur.lastrowid))  # an INSERT always sets it
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return AppendResult(stream, tuple(positions), current + len(encoded), recorded_at=now)

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

    def _stream_all(self, after_position: int, limit: int) -> Iterator[RecordedEvent]:
        """The events straight from the cursor: each row becomes an event when it is taken."""
        rows = self._conns.get().execute(
            f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, limit))
        return starmap(RecordedEvent, rows)

    def stream_version(self, stream_id: str) -> int:
        row = self._conns.get().execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        return row[0] or 0

    def last_position(self) -> int:
        row = self._conns.get().execute("SELECT MAX(position) FROM events").fetchone()
        return row[0] or 0

    def count_events(self, after_position: int = 0, upto_position: int | None = None) -> int:
        sql = "SELECT COUNT(*) FROM events WHERE position > ?"
        args: list[int] = [after_position]
        if upto_position is not None:
            sql += " AND position <= ?"
            args.append(upto_position)
        return int(self._conns.get().execute(sql, args).fetchone()[0])

    def log_id(self) -> str:
        row = self._conns.get().execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
        return row[0] if row else ""

    def stats(self) -> dict[str, object]:
        conn = self._conns.get()
        total, streams, last = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT stream_id), COALESCE(MAX(position), 0) FROM events"
        ).fetchone()
        by_type = dict(conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type"))
        return {"backend": self.backend, "location": str(self.path), "events": total,
                "streams": streams, "last_position": last, "by_type": by_type,
                "log_id": self.log_id()}

    def wipe(self) -> None:
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM events")
            # Another log from now on: read models built from the old one must be rebuilt.
            conn.execute("UPDATE meta SET value = ? WHERE key = 'log_id'", (uuid.uuid4().hex,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conns.close()


def _already_stored(stream: str, ids: list[str], found: list[tuple[int, str, int]]
                    ) -> AppendResult:
    """An idempotent retry: every id stored already, in this stream, returns the originals."""
    if len(found) != len(ids) or any(s != stream for _, s, _ in found):
        raise DuplicateEventError(
            f"{len(found)} of the {len(ids)} event ids in this batch are already stored"
            + ("" if all(s == stream for _, s, _ in found) else " in another stream")
            + "; retry the exact original batch, or use new event ids"
        )
    return AppendResult(stream, tuple(p for p, _, _ in found), max(v for _, _, v in found),
                        written=False)
