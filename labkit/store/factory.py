"""Open the stores the settings ask for: PostgreSQL/Redis when their URLs are set, else SQLite."""

from __future__ import annotations

from labkit.config import Settings
from labkit.store.base import EventStore
from labkit.store.read_base import ReadStore


def open_event_store(settings: Settings | None = None) -> EventStore:
    s = settings or Settings.from_env()
    if s.pg_url:
        from labkit.store.postgres_events import PostgresEventStore

        return PostgresEventStore(s.pg_url, schema=s.pg_schema)
    from labkit.store.sqlite_events import SqliteEventStore

    return SqliteEventStore(s.events_db, synchronous=s.sqlite_synchronous)


def open_read_store(settings: Settings | None = None) -> ReadStore:
    s = settings or Settings.from_env()
    if s.redis_url:
        from labkit.store.redis_read import RedisReadStore

        store: ReadStore = RedisReadStore(s.redis_url, prefix=s.redis_prefix)
        store.ping()
        return store
    from labkit.store.sqlite_read import SqliteReadStore

    return SqliteReadStore(s.read_db, synchronous=s.sqlite_synchronous)
