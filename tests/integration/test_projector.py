"""The projector: catch-up from checkpoints, kill -9 in mid-batch, replay equals incremental."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecommerce.domain import users as u
from ecommerce.projections import get_projections
from ecommerce.projections.projector import Projector
from ecommerce.projections.replay import replay
from ecommerce.store.read_base import ReadStore
from ecommerce.store.sqlite_events import SqliteEventStore
from ecommerce.store.sqlite_read import SqliteReadStore
from tests.waiting import wait_until

COLLECTIONS = [c for p in get_projections() for c in p.collections]


def add_users(store: SqliteEventStore, n: int, seed: int = 1) -> tuple[int, int]:
    """Create n users, deactivate about a third. Returns (created, deactivated)."""
    rnd = random.Random(seed)
    deactivated = 0
    for i in range(n):
        user = u.User(f"{seed}-{i}")
        events = [u.create(user, f"User {i}", f"user{i}@example.com")]
        if rnd.random() < 0.33:
            events.append(u.deactivate(u.User(user.id, version=1)))
            deactivated += 1
        store.append(u.stream_id(user.id), events, "none")
    return n, deactivated


def _counts(reads: ReadStore) -> dict[str, int]:
    """The user-stats summary: totals, and the per-day creation counters added up."""
    doc = reads.get("user_stats", "summary") or {}
    return {"total_users": doc.get("total_users"), "active_users": doc.get("active_users"),
            "created": sum(v for k, v in doc.items() if k.startswith("created_on:"))}


def test_projector_catches_up_and_reports_lag(tmp_path: Path) -> None:
    es = SqliteEventStore(tmp_path / "e.db")
    rs = SqliteReadStore(tmp_path / "r.db")
    created, deactivated = add_users(es, 50)
    projector = Projector(es, rs, get_projections(), batch_size=7)
    assert projector.lag() == es.last_position()
    assert projector.run_once() == es.last_position()
    assert projector.lag() == 0
    assert _counts(rs) == {"total_users": created, "active_users": created - deactivated,
                           "created": created}
    assert rs.count("users") == created
    assert projector.run_once() == 0  # nothing new: nothing read, nothing re-applied


def _processor_env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update({"LABKIT_EVENTS_DB": str(tmp_path / "e.db"), "LABKIT_READ_DB": str(tmp_path / "r.db"),
                "LABKIT_DATA_DIR": str(tmp_path)})
    env.update(extra)
    return env


def _kill_and_restart(tmp_path: Path, env: dict[str, str], es: SqliteEventStore,
                      reads: ReadStore, kills: int) -> int:
    """Run the real processor process; SIGKILL it `kills` times while it is working."""
    cmd = [sys.executable, "-m", "ecommerce.projections.processor", "--follow", "--batch", "20"]
    rnd = random.Random(3)
    killed_mid_way = 0
    head = es.last_position()
    for _ in range(kills):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            before = reads.checkpoint("users")
            # Wait until it has committed at least one batch (or there is none left), then kill
            # it at a random moment: the jitter picks the moment, it stands in for no condition.
            wait_until(lambda before=before: reads.checkpoint("users") != before or before >= head,
                       interval=0.002, what="the processor to commit a batch")
            time.sleep(rnd.uniform(0.0, 0.03))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if reads.checkpoint("users") < head:
            killed_mid_way += 1
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def caught_up() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            return min(reads.checkpoint(p.name) for p in get_projections()) >= head

        wait_until(caught_up, interval=0.02, what="the restarted processor to catch up")
    finally:
        proc.terminate()
        proc.wait(10)
    return killed_mid_way


def _assert_equals_fresh_replay(es: SqliteEventStore, reads: ReadStore, tmp_path: Path) -> None:
    fresh = SqliteReadStore(tmp_path / "fresh.db")
    replay(es, fresh, progress=False)
    assert reads.dump(COLLECTIONS) == fresh.dump(COLLECTIONS)


@pytest.mark.slow
def test_killing_the_processor_mid_batch_never_applies_twice_or_skips_sqlite(tmp_path: Path) -> None:
    es = SqliteEventStore(tmp_path / "e.db")
    created, deactivated = add_users(es, 8000)
    reads = SqliteReadStore(tmp_path / "r.db")
    killed = _kill_and_restart(tmp_path, _processor_env(tmp_path, {}), es, reads, kills=5)
    assert killed >= 3, "the kills must land while the processor is still working"
    # Counters would be off if any event had been applied twice or skipped.
    assert _counts(reads) == {"total_users": created, "created": created,
                                                  "active_users": created - deactivated}
    _assert_equals_fresh_replay(es, reads, tmp_path)


@pytest.mark.slow
def test_killing_the_processor_mid_batch_never_applies_twice_or_skips_redis(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    from ecommerce.store.redis_read import RedisReadStore

    url, prefix = redis_prefix
    es = SqliteEventStore(tmp_path / "e.db")
    created, deactivated = add_users(es, 8000)
    reads = RedisReadStore(url, prefix=prefix)
    env = _processor_env(tmp_path, {"LABKIT_REDIS_URL": url, "LABKIT_REDIS_PREFIX": prefix})
    killed = _kill_and_restart(tmp_path, env, es, reads, kills=5)
    assert killed >= 3
    assert _counts(reads) == {"total_users": created, "created": created,
                                                  "active_users": created - deactivated}
    _assert_equals_fresh_replay(es, reads, tmp_path)


def test_two_projectors_at_once_apply_each_event_exactly_once(tmp_path: Path) -> None:
    import threading

    es = SqliteEventStore(tmp_path / "e.db")
    created, deactivated = add_users(es, 400)
    reads = SqliteReadStore(tmp_path / "r.db")
    projectors = [Projector(es, reads, get_projections(), batch_size=13) for _ in range(2)]
    threads = [threading.Thread(target=p.run_once) for p in projectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    projectors[0].run_once()
    assert _counts(reads) == {"total_users": created, "created": created,
                                                  "active_users": created - deactivated}


# A random but valid history: commands drawn at random, applied only when the domain allows.
commands = st.lists(
    st.tuples(st.sampled_from(["create", "update", "deactivate", "project"]), st.integers(0, 5),
              st.integers(1, 9)),
    min_size=1, max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=commands, batch=st.integers(1, 8))
def test_replay_equals_incrementally_built_state(history, batch) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        es = SqliteEventStore(Path(tmp) / "e.db")
        incremental = SqliteReadStore(Path(tmp) / "inc.db")
        projector = Projector(es, incremental, get_projections(), batch_size=batch)
        for action, who, n in history:
            uid = str(who)
            user = u.fold(uid, es.read_stream(u.stream_id(uid)))
            try:
                if action == "create":
                    event = u.create(user, f"name {n}", f"u{n}@example.com")
                elif action == "update":
                    event = u.update(user, name=f"renamed {n}")
                elif action == "deactivate":
                    event = u.deactivate(user)
                else:
                    projector.step()  # project part-way, between appends
                    continue
            except u.UserRuleError:
                continue
            es.append(u.stream_id(uid), [event], user.version)
        projector.run_once()
        rebuilt = SqliteReadStore(Path(tmp) / "rebuilt.db")
        stats = replay(es, rebuilt, progress=False)
        assert stats.events == es.last_position()
        assert rebuilt.dump(COLLECTIONS) == incremental.dump(COLLECTIONS)
        es.close()
        incremental.close()
        rebuilt.close()


def test_replay_next_to_a_following_projector_still_rebuilds_everything(tmp_path: Path) -> None:
    import threading

    es = SqliteEventStore(tmp_path / "e.db")
    created, deactivated = add_users(es, 3000)
    reads = SqliteReadStore(tmp_path / "r.db")
    follower = Projector(es, reads, get_projections(), batch_size=20)
    stop = threading.Event()
    thread = threading.Thread(target=follower.follow, args=(stop, 0.001))
    thread.start()
    try:
        wait_until(lambda: reads.checkpoint("users") > 0, what="the follower's first batch")
        stats = replay(es, reads, progress=False, batch_size=50)
    finally:
        stop.set()
        thread.join(10)
    assert stats.position == es.last_position()
    assert _counts(reads) == {"total_users": created, "created": created,
                                                  "active_users": created - deactivated}
    _assert_equals_fresh_replay(es, reads, tmp_path)
