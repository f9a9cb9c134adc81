"""The read side never lies: a replaced event log is noticed and the read model rebuilt from it
(and said so), and a store that vanished under a running service turns it not-ready with the
reason instead of answering 2xx from a ghost.

Each test fails on the original code: its projector applied a new log's events on top of a
model built from the old one (or skipped them all when its checkpoint was ahead of the new
head), SQLite services kept writing to a deleted file with 200/202 answers and a ready
`/readyz`, and a dropped PostgreSQL schema made every command a 500.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.projections import get_projections
from ecommerce.projections.projector import LogReplaced, Projector
from ecommerce.store.sqlite_events import SqliteEventStore
from ecommerce.store.sqlite_read import SqliteReadStore
from tests.integration import service_proc
from tests.integration.service_proc import Services
from tests.integration.test_projector import COLLECTIONS, _counts, add_users
from tests.waiting import wait_until

services = service_proc.services  # the fixture: real subprocesses, stopped after each test


def test_a_projector_refuses_to_mix_two_logs(tmp_path: Path) -> None:
    old = SqliteEventStore(tmp_path / "old.db")
    add_users(old, 40, seed=1)
    reads = SqliteReadStore(tmp_path / "read.db")
    Projector(old, reads, get_projections()).run_once()
    assert reads.source() == old.log_id()

    grown = SqliteEventStore(tmp_path / "grown.db")  # another log, already past the checkpoint
    add_users(grown, 80, seed=2)
    with pytest.raises(LogReplaced, match=r"built from event log .* but the log is now"):
        Projector(grown, reads, get_projections()).step()
    assert _counts(reads)["total_users"] == 40, "nothing of the other log was applied"

    # A model that does not know its log (built before logs had an id): the checkpoint is
    # ahead of the new log's head.
    legacy = SqliteReadStore(tmp_path / "legacy.db")
    legacy.commit(WriteBuffer(), {p.name: 500 for p in get_projections()}, {})
    short = SqliteEventStore(tmp_path / "short.db")
    add_users(short, 3, seed=3)
    with pytest.raises(LogReplaced, match="checkpoint 500 is ahead of the event log's head"):
        Projector(short, legacy, get_projections()).run_once()

    # Wiping a log gives it a new identity too.
    old.wipe()
    with pytest.raises(LogReplaced):
        Projector(old, reads, get_projections()).step()


def _processor(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ecommerce.projections.processor", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update({"LABKIT_EVENTS_DB": str(tmp_path / "events.db"),
                "LABKIT_READ_DB": str(tmp_path / "read.db"), "LABKIT_DATA_DIR": str(tmp_path)})
    return env


def _log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_processor_rebuilds_from_a_replaced_log_and_says_so(tmp_path: Path) -> None:
    es = SqliteEventStore(tmp_path / "events.db")
    add_users(es, 40, seed=1)
    reads = SqliteReadStore(tmp_path / "read.db")
    env = _env(tmp_path)
    done = subprocess.run(_processor(tmp_path), env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert reads.count("users") == 40 and reads.note() is None, done.stdout

    # While it follows the log, the log is wiped and written again from scratch.
    log_path = tmp_path / "processor.log"
    with log_path.open("w") as log:
        follower = subprocess.Popen(_processor(tmp_path, "--follow", "--poll", "0.005"),
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        es.wipe()
        add_users(es, 3, seed=9)
        wait_until(lambda: reads.count("users") == 3 and reads.note(),
                   what="the read model to be rebuilt from the wiped log")
        wait_until(lambda: min(reads.checkpoint(p.name) for p in get_projections())
                   == es.last_position(), what="the follower to catch up")
    finally:
        follower.terminate()
        follower.wait(10)
    assert _counts(reads) == {"total_users": 3, "active_users": _counts(reads)["active_users"],
                              "created": 3}
    said = _log_lines(log_path.read_text())
    rebuilt = [e for e in said if e["msg"] == "read model rebuilt"]
    assert rebuilt and "it was replaced, restored or wiped" in rebuilt[0]["reason"], said
    assert any(e["level"] == "warning" and e["msg"].startswith("event log replaced")
               for e in said)
    assert "rebuilt at" in reads.note() and "wiped" in reads.note()

    # Not running when the file is deleted and re-created (and grows past the checkpoint):
    # the one-shot processor (the CronJob) rebuilds before it catches up.
    es.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'events.db'}{suffix}").unlink(missing_ok=True)
    fresh = SqliteEventStore(tmp_path / "events.db")
    add_users(fresh, 60, seed=4)
    done = subprocess.run(_processor(tmp_path), env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert any(e["msg"] == "read model rebuilt" for e in _log_lines(done.stdout)), done.stdout
    assert _counts(reads)["total_users"] == 60
    rebuilt_db = SqliteReadStore(tmp_path / "check.db")
    Projector(fresh, rebuilt_db, get_projections()).run_once()
    assert reads.dump(COLLECTIONS) == rebuilt_db.dump(COLLECTIONS)


def _not_ready_because(svc: service_proc.ServiceProc, words: str) -> dict:
    r = svc.client.get("/readyz")
    body = r.json()
    assert r.status_code == 503 and body["status"] == "not ready", body
    assert any(words in text for text in body["checks"].values()), body
    return body


def test_a_deleted_sqlite_file_turns_its_services_not_ready_and_says_why(
        services: Services) -> None:
    cmd = services.start("command-service")
    qry = services.start("query-service")
    ok = cmd.client.post("/api/commands/create-user",
                         json={"name": "Kim", "email": "kim@example.com"})
    assert ok.status_code == 202
    (services.data_dir / "events.db").unlink()
    _not_ready_because(cmd, "events.db was deleted while this process had it open")
    lost = cmd.client.post("/api/commands/create-user",
                           json={"name": "Lee", "email": "lee@example.com"})
    assert lost.status_code == 503 and lost.json()["reason"] == "store_unavailable", lost.text
    assert "labkit down" in lost.json()["detail"]

    assert qry.client.get("/readyz").status_code == 200
    (services.data_dir / "read.db").unlink()
    _not_ready_because(qry, "read.db was deleted")
    assert qry.client.get("/api/queries/users").status_code == 503


@pytest.mark.postgres
def test_a_dropped_postgres_schema_is_a_503_that_says_so(services: Services,
                                                          pg_schema: tuple[str, str]) -> None:
    import psycopg

    cmd = services.start("command-service", pg=pg_schema)
    assert cmd.client.post("/api/commands/create-user",
                           json={"name": "Kim", "email": "kim@example.com"}).status_code == 202
    url, schema = pg_schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    _not_ready_because(cmd, f"schema '{schema}' are gone")
    r = cmd.client.post("/api/commands/create-user",
                        json={"name": "Lee", "email": "lee@example.com"})
    assert r.status_code == 503 and r.json()["reason"] == "store_unavailable", r.text


def test_a_flushed_redis_read_model_is_noticed_and_rebuilt(tmp_path: Path,
                                                          redis_prefix: tuple[str, str]) -> None:
    import redis

    from ecommerce.store.redis_read import RedisReadStore

    url, prefix = redis_prefix
    es = SqliteEventStore(tmp_path / "events.db")
    created, deactivated = add_users(es, 30, seed=5)
    reads = RedisReadStore(url, prefix=prefix)
    notices: list[str] = []
    projector = Projector(es, reads, get_projections(), on_notice=notices.append)
    projector.run_once()
    client = redis.Redis.from_url(url)
    client.delete(*client.scan_iter(match=f"{prefix}:*"))  # FLUSHDB, for this lab's keys only
    assert reads.count("users") == 0
    projector.run_once()
    assert len(notices) == 1 and "went back from" in notices[0] and "flushed" in notices[0]
    assert _counts(reads) == {"total_users": created, "active_users": created - deactivated,
                              "created": created}


def test_a_lab_whose_log_was_deleted_says_so_then_rebuilds_after_a_restart(
        tmp_path: Path) -> None:
    """The issue's scenario, end to end: events.db deleted under a running lab."""
    from labkit.lab import LabError
    from tests.integration.labs import full_lab

    with full_lab(tmp_path / "lab") as lab:
        for i in range(5):
            last = lab.command("create-user", name=f"Before {i}", email=f"b{i}@example.com")
        lab.wait_for_projection(last["position"])
        assert lab.query("users")["total"] == 5
        (lab.settings.data_dir / "events.db").unlink()

        rows = {r["service"]: r for r in lab.runtime.status()}
        assert rows["command-service"]["status"] == "not ready"
        assert "events.db was deleted" in rows["command-service"]["detail"]
        with pytest.raises(LabError, match="503"):
            lab.command("create-user", name="Lost", email="lost@example.com")

        lab.down()
        lab.up(progress=False)
        wait_until(lambda: lab.query("users")["total"] == 0,
                   what="query-service to stop serving the deleted log's users")
        new = lab.command("create-user", name="After", email="after@example.com")
        lab.wait_for_projection(new["position"])
        assert [x["name"] for x in lab.query("users")["users"]] == ["After"]
        rows = {r["service"]: r for r in lab.runtime.status()}
        assert rows["query-service"]["status"] == "ready"
        assert "read model rebuilt at" in rows["query-service"]["detail"]
        ready = httpx.get(lab.url("query-service") + "/readyz").json()
        assert "rebuilt" in ready["checks"]["read_store"]
        assert "read model rebuilt" in lab.logs("event-processor")
