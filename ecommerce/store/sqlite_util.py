"""Opening SQLite files the way every labkit store wants them: WAL, busy timeout, one
connection per thread, and a clear error when the file cannot be used.

A file deleted (or replaced) while the process has it open does not stop SQLite: the open
connections keep reading and writing the deleted file, and everything written after the delete
is lost when the process ends. So every use first checks that the path still names the file the
connections opened; if not, the store raises `StoreUnavailableError` (HTTP 503, `/readyz` not
ready) with what happened and what to do, instead of answering 2xx from a ghost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

from ecommerce.store.base import StoreUnavailableError

BUSY_TIMEOUT_MS = 10_000
#: SQLite's own WAL auto-checkpoint threshold, in pages.
DEFAULT_AUTOCHECKPOINT = 1000


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
        #: (device, inode) of the file the connections opened; None until the first open.
        self._identity: tuple[int, int] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the folder for {self.path} ({exc}); set LABKIT_DATA_DIR to a "
                "writable folder"
            ) from None
        if not self.path.exists():
            # A WAL without its database belongs to a deleted file: SQLite would replay its
            # pages into the new, empty database. Nothing can be recovered from it.
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.path}{suffix}")

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise StoreUnavailableError if the database file was deleted or replaced."""
        if self._identity is None:
            return
        now = self._stat()
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreUnavailableError(
                f"the SQLite database {self.path} was {what} while this process had it open; "
                "what was written to it since is lost with the old file. Restart the lab "
                "(`labkit down`, then `labkit up`) to continue on a new file, or `labkit reset` "
                "to start from scratch."
            )

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self.check_file()
            return conn
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
            if self._identity is None:
                self._identity = self._stat()
        self.check_file()
        return conn

    def autocheckpoint(self, conn: sqlite3.Connection, pages: int) -> None:
        """Let this thread's connection checkpoint the WAL once it holds `pages` pages (SQLite's
        default: 1000, 4 MiB). Each checkpoint syncs the disk; a bulk build (a replay) takes
        fewer, larger ones."""
        if getattr(self._local, "autocheckpoint", DEFAULT_AUTOCHECKPOINT) != pages:
            conn.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")
            self._local.autocheckpoint = pages

    def init(self, script: str) -> None:
        """Run a schema script; a file that cannot be written says so in one sentence."""
        try:
            self.get().executescript(script)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(
                f"cannot set up SQLite database {self.path}: {exc}. Make the file and its folder "
                "writable, or set LABKIT_DATA_DIR to a writable folder."
            ) from None

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
