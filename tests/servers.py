"""Are the PostgreSQL and Redis servers of the tests there? For `make test`'s nbval pass on them.

    python -m tests.servers            # prints "<pg url> <redis url>", exit 0; absent: exit 3
                                       # (with LABKIT_REQUIRE_SERVERS=1: exit 2, an error)
    python -m tests.servers --drop SCHEMA PREFIX   # remove what a run left there

The URLs are the tests' (tests/conftest.py): LABKIT_TEST_PG_URL / LABKIT_TEST_REDIS_URL, else
the local defaults.
"""

from __future__ import annotations

import sys

from tests.conftest import pg_url, redis_url, servers_required


def reachable() -> str | None:
    """None when both answer, else why not."""
    try:
        import psycopg

        with psycopg.connect(pg_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        import redis

        redis.Redis.from_url(redis_url(), socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def drop(schema: str, prefix: str) -> None:
    from labkit.runtime.local import drop_pg_schema, drop_redis_prefix

    drop_pg_schema(pg_url(), schema)
    drop_redis_prefix(redis_url(), prefix)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--drop"] and len(argv) == 3:
        drop(argv[1], argv[2])
        return 0
    why = reachable()
    if why is None:
        print(pg_url(), redis_url())
        return 0
    if servers_required():
        print(f"ERROR: PostgreSQL/Redis are required (LABKIT_REQUIRE_SERVERS=1) but not "
              f"reachable: {why}", file=sys.stderr)
        return 2
    print(f"skipped: the nbval pass on PostgreSQL + Redis (servers not reachable: {why})",
          file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
