"""Opening SQLite files the way every labkit store wants them: WAL, busy timeout, one
connection per thread, and a clear error when the file cannot be used."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from ecommerce.store.base import StoreUnavailableError

BUSY_TIMEOUT_MS = 10_000


class SqliteConnections:
    """One connection per thread to one database file (SQLite connections are not shared)."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("NORMAL", "FULL", "OFF"):
            raise ValueError("synchronous must be NORMAL, FULL or OFF")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the folder for {self.path} ({exc}); set LABKIT_DATA_DIR to a "
                "writable folder"
            ) from None

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(
                    f"cannot open SQLite database {self.path}: {exc}. If another program holds "
                    "it locked, stop that program (labkit down) or set LABKIT_DATA_DIR elsewhere."
                ) from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
