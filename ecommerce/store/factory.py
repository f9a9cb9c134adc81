"""Open the stores the settings ask for: PostgreSQL/Redis when their URLs are set, else SQLite."""

from __future__ import annotations

from ecommerce.config import Settings
from ecommerce.store.base import EventStore
from ecommerce.store.read_base import ReadStore


def open_event_store(settings: Settings | None = None) -> EventStore:
    s = settings or Settings.from_env()
    if s.pg_url:
        from ecommerce.store.postgres_events import PostgresEventStore

        return PostgresEventStore(s.pg_url, schema=s.pg_schema,
                                  synchronous_commit=s.pg_synchronous_commit)
    from ecommerce.store.sqlite_events import SqliteEventStore

    return SqliteEventStore(s.events_db, synchronous=s.sqlite_synchronous)


def open_read_store(settings: Settings | None = None) -> ReadStore:
    s = settings or Settings.from_env()
    if s.redis_url:
        from ecommerce.store.redis_read import RedisReadStore

        store: ReadStore = RedisReadStore(s.redis_url, prefix=s.redis_prefix)
        store.ping()
        return store
    from ecommerce.store.sqlite_read import SqliteReadStore

    return SqliteReadStore(s.read_db, synchronous=s.sqlite_synchronous)
