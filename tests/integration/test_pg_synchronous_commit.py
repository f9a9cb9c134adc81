"""LABKIT_PG_SYNCHRONOUS_COMMIT: the lab's PostgreSQL sessions get it (off unless told), or
keep the server's (`server`)."""

from __future__ import annotations

import pytest

from ecommerce.config import Settings
from ecommerce.store.factory import open_event_store
from ecommerce.store.postgres_events import PostgresEventStore


def session_setting(store: PostgresEventStore) -> str:
    return store._run(lambda cur: cur.execute("SHOW synchronous_commit").fetchone()[0])


def server_setting(store: PostgresEventStore) -> str:
    return store._run(lambda cur: cur.execute(
        "SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'").fetchone()[0])


@pytest.mark.parametrize("value", ["off", "on"])
def test_the_setting_reaches_every_session_of_the_store(pg_schema, monkeypatch, value) -> None:
    url, schema = pg_schema
    monkeypatch.setenv("LABKIT_PG_URL", url)
    monkeypatch.setenv("LABKIT_PG_SCHEMA", schema)
    monkeypatch.setenv("LABKIT_PG_SYNCHRONOUS_COMMIT", value)
    store = open_event_store()
    try:
        assert isinstance(store, PostgresEventStore) and store.synchronous_commit == value
        assert session_setting(store) == value
        assert str(store.read_all(0, 1)) == "[]"  # and the store still works
    finally:
        store.close()


def test_the_lab_turns_it_off_by_default_and_server_keeps_the_servers(pg_schema,
                                                                      monkeypatch) -> None:
    url, schema = pg_schema
    monkeypatch.delenv("LABKIT_PG_SYNCHRONOUS_COMMIT", raising=False)
    assert Settings.from_env().pg_synchronous_commit == "off"
    store = PostgresEventStore(url, schema=schema, synchronous_commit="server")
    try:
        assert session_setting(store) == server_setting(store)
    finally:
        store.close()


def test_a_wrong_value_is_refused_with_the_choices(monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_PG_SYNCHRONOUS_COMMIT", "maybe")
    with pytest.raises(ValueError, match="must be one of server, on, off; got 'maybe'"):
        Settings.from_env()
