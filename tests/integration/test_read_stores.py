"""The read store contract on SQLite and Redis: atomic commits guarded by checkpoints, and
folded batches that equal the writes applied one by one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecommerce.domain.readmodel import Delete, Incr, Merge, Put, WriteBuffer, apply_to_dict
from ecommerce.store.read_base import CheckpointConflict, ReadStore, SourceMismatch


@pytest.fixture(params=["sqlite", "redis"])
def reads(request, tmp_path) -> Iterator[ReadStore]:
    if request.param == "sqlite":
        from ecommerce.store.sqlite_read import SqliteReadStore

        store: ReadStore = SqliteReadStore(tmp_path / "read.db")
        yield store
        store.close()
    else:
        url, prefix = request.getfixturevalue("redis_prefix")
        from ecommerce.store.redis_read import RedisReadStore

        store = RedisReadStore(url, prefix=prefix)
        yield store
        store.close()


def commit(store: ReadStore, writes, cp: dict[str, int], expected: dict[str, int]) -> None:
    buf = WriteBuffer()
    buf.extend(list(writes))
    store.commit(buf, cp, expected)


def test_documents_list_in_order_and_counters_add_up(reads: ReadStore) -> None:
    commit(reads, [Put("users", "b", {"id": "b", "n": 1}, 2), Put("users", "a", {"id": "a"}, 1),
                   Incr("stats", "s", {"total": 1}), Incr("stats", "s", {"total": 1, "active": 1})],
           {"p": 2}, {})
    commit(reads, [Merge("users", "b", {"status": "inactive"}, 3),
                   Incr("stats", "s", {"active": -1})], {"p": 3}, {"p": 2})
    assert [d["_key"] for d in reads.documents("users")] == ["a", "b"]
    assert reads.get("users", "b") == {"id": "b", "n": 1, "status": "inactive"}
    assert reads.get("stats", "s") == {"total": 2, "active": 0}
    assert reads.get("users", "zzz") is None
    assert reads.count("users") == 2
    assert reads.checkpoint("p") == 3
    assert reads.checkpoints()["p"].updated_at


def test_a_stale_checkpoint_commits_nothing(reads: ReadStore) -> None:
    commit(reads, [Put("c", "k", {"v": 1})], {"p": 5}, {})
    with pytest.raises(CheckpointConflict):
        commit(reads, [Put("c", "k", {"v": 2}), Put("c", "other", {})], {"p": 9}, {"p": 4})
    assert reads.get("c", "k") == {"v": 1}
    assert reads.get("c", "other") is None
    assert reads.checkpoint("p") == 5


def test_reset_drops_only_the_named_collections_and_checkpoints(reads: ReadStore) -> None:
    commit(reads, [Put("a", "1", {"x": 1}), Put("b", "1", {"y": 1})], {"pa": 1, "pb": 1}, {})
    reads.reset(["a"], ["pa"])
    assert reads.documents("a") == [] and reads.count("a") == 0
    assert reads.get("b", "1") == {"y": 1}
    assert reads.checkpoint("pa") == 0 and reads.checkpoint("pb") == 1


keys = st.sampled_from(["k1", "k2", "k3"])
fields = st.sampled_from(["f", "g"])
writes = st.one_of(
    st.builds(Put, st.just("c"), keys, st.dictionaries(fields, st.integers(-5, 5), max_size=2),
              st.integers(0, 3)),
    st.builds(Merge, st.just("c"), keys, st.dictionaries(fields, st.integers(-5, 5), max_size=2),
              st.integers(0, 3)),
    st.builds(Incr, st.just("c"), keys, st.dictionaries(fields, st.integers(-3, 3), min_size=1,
                                                        max_size=2), st.integers(0, 3)),
    st.builds(Delete, st.just("c"), keys),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(writes, max_size=12), min_size=1, max_size=4))
def test_folded_batches_equal_writes_applied_one_by_one(reads: ReadStore, batches) -> None:
    reads.reset(["c"], ["p"])
    expected: dict = {}
    for i, batch in enumerate(batches):
        for w in batch:
            apply_to_dict(expected, w)
        commit(reads, batch, {"p": i + 1}, {"p": i})
    stored = {("c", k): doc for k, doc in reads.dump(["c"])["c"].items()}
    assert stored == expected


def test_a_staged_generation_is_invisible_until_swapped_in_with_its_checkpoints(
        reads: ReadStore) -> None:
    commit(reads, [Put("users", "old", {"v": 1}), Put("stats", "s", {"n": 1})], {"pu": 4, "ps": 4},
           {})
    staged = reads.stage(["users"], ["pu"], "log-a")
    commit(staged, [Put("users", "new", {"v": 2})], {"pu": 9}, {})
    assert [d["_key"] for d in reads.documents("users")] == ["old"] and reads.checkpoint("pu") == 4
    assert staged.count("users") == 1 and staged.checkpoint("pu") == 9
    with pytest.raises(ValueError, match="not part of this rebuild"):
        commit(staged, [Put("stats", "s", {"n": 5})], {"pu": 10}, {"pu": 9})

    reads.swap(staged, note="rebuilt because of a test")
    assert [d["_key"] for d in reads.documents("users")] == ["new"] and reads.count("users") == 1
    assert reads.get("users", "old") is None and reads.get("users", "new") == {"v": 2}
    assert reads.checkpoint("pu") == 9 and reads.checkpoint("ps") == 4  # only its projections
    assert reads.get("stats", "s") == {"n": 1}
    assert reads.source() == "log-a" and reads.note() == "rebuilt because of a test"
    # A live commit that still expects the checkpoint from before the swap is refused.
    with pytest.raises(CheckpointConflict):
        commit(reads, [Put("users", "late", {})], {"pu": 5}, {"pu": 4})
    commit(reads, [Put("users", "late", {})], {"pu": 10}, {"pu": 9})
    assert reads.count("users") == 2


def test_a_commit_from_another_log_is_refused(reads: ReadStore) -> None:
    buf = WriteBuffer()
    buf.add(Put("c", "k", {"v": 1}))
    reads.commit(buf, {"p": 1}, {}, source="log-a")
    assert reads.source() == "log-a"
    buf = WriteBuffer()
    buf.add(Put("c", "k", {"v": 2}))
    with pytest.raises(SourceMismatch):
        reads.commit(buf, {"p": 2}, {"p": 1}, source="log-b")
    assert reads.get("c", "k") == {"v": 1} and reads.checkpoint("p") == 1


def test_a_generation_left_by_a_replay_that_died_is_dropped_by_the_next_one(
        reads: ReadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from ecommerce.store import read_base

    dead = reads.stage(["users"], ["pu"], "log-a")
    commit(dead, [Put("users", str(i), {}) for i in range(50)], {"pu": 50}, {})
    reads.stage(["users"], ["pu"], "log-a")  # a replay right after: the first may be alive
    assert dead.count("users") == 50
    monkeypatch.setattr(read_base, "STALE_STAGING_S", 0.0)
    reads.stage(["users"], ["pu"], "log-a")
    assert dead.count("users") == 0 and dead.checkpoints() == {} and dead.source() is None
