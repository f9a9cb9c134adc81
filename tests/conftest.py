"""Shared fixtures: stores on every backend, with servers skipped (or failed in CI) when absent.

PostgreSQL: LABKIT_TEST_PG_URL, else LABKIT_PG_URL, else postgresql://postgres@127.0.0.1:5432/test.
Redis: LABKIT_TEST_REDIS_URL, else LABKIT_REDIS_URL, else redis://127.0.0.1:6379/0.
With LABKIT_REQUIRE_SERVERS=1 (set by .ci/run) an unreachable server fails the test instead of
skipping it, so CI can never pass by skipping the server-backed path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests cannot flake: the same examples on every run (a failure is a bug, never bad
# luck) and no per-example time limit (a loaded machine is not a failure). A test's own
# @settings adds to this profile.
settings.register_profile("labkit", deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("labkit")

# A lab a test starts never takes the student's gateway port (8080): any free port instead.
os.environ["LABKIT_GATEWAY_PORT"] = "0"

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def pg_url() -> str:
    return os.environ.get("LABKIT_TEST_PG_URL") or os.environ.get("LABKIT_PG_URL") or DEFAULT_PG_URL


def redis_url() -> str:
    return (os.environ.get("LABKIT_TEST_REDIS_URL") or os.environ.get("LABKIT_REDIS_URL")
            or DEFAULT_REDIS_URL)


def servers_required() -> bool:
    return os.environ.get("LABKIT_REQUIRE_SERVERS") == "1"


def server_missing(what: str, reason: str) -> None:
    message = f"{what} not reachable ({reason}); skipped"
    if servers_required():
        pytest.fail(f"{what} is required (LABKIT_REQUIRE_SERVERS=1) but not reachable: {reason}")
    pytest.skip(message)


_pg_status: dict[str, str | None] = {}
_redis_status: dict[str, str | None] = {}


def require_postgres() -> str:
    url = pg_url()
    if url not in _pg_status:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_status[url] = None
        except Exception as exc:  # any failure means "not usable here"
            _pg_status[url] = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    if _pg_status[url] is not None:
        server_missing("PostgreSQL", _pg_status[url] or "")
    return url


def require_redis() -> str:
    url = redis_url()
    if url not in _redis_status:
        try:
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
            _redis_status[url] = None
        except Exception as exc:
            _redis_status[url] = str(exc) or type(exc).__name__
    if _redis_status[url] is not None:
        server_missing("Redis", _redis_status[url] or "")
    return url


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(url, schema): a fresh PostgreSQL schema, dropped afterwards."""
    url = require_postgres()
    schema = "t_" + uuid.uuid4().hex[:12]
    yield url, schema
    from labkit.runtime.local import drop_pg_schema

    drop_pg_schema(url, schema)


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix): a fresh Redis key prefix, its keys deleted afterwards."""
    url = require_redis()
    prefix = "t_" + uuid.uuid4().hex[:12]
    yield url, prefix
    from labkit.runtime.local import drop_redis_prefix

    drop_redis_prefix(url, prefix)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "labkit-data"
    d.mkdir()
    return d
