"""RedisReadStore's commit script at the wire (real Redis): the checks refuse a batch before
anything is written, the live map and generations decide where documents go, values and keys
reach Redis byte for byte as Python encoded them, and the result equals what the previous
WATCH + MULTI/EXEC commit wrote (kept here as `PipelineCommitStore`, the reference)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecommerce.domain.events import compact_dumps
from ecommerce.domain.readmodel import Delete, Incr, Merge, Put, Write, WriteBuffer
from ecommerce.store.base import StoreUnavailableError
from ecommerce.store.read_base import (
    CheckpointConflict,
    ReadStore,
    SourceMismatch,
    Staged,
    physical,
)
from ecommerce.store.redis_read import RedisReadStore
from tests.conftest import require_redis

BIG = 2**63 - 1


class PipelineCommitStore(RedisReadStore):
    """The commit as it was before the Lua script: WATCH, reads, then MULTI/EXEC (5 round
    trips). The reference the script must agree with."""

    def _commit(self, buffer: WriteBuffer, checkpoints: Mapping[str, int],
                expected: Mapping[str, int], source: str | None, gen: str | None) -> None:
        cp_key, src_key = self._cp_key(gen), self._source_key(gen)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(cp_key, src_key, *([self._live_key] if gen is None else []))  # type: ignore[no-untyped-call]
                raw = pipe.hgetall(cp_key)
                stored = {k.decode(): json.loads(v)["position"] for k, v in raw.items()}
                for name, want in expected.items():
                    if stored.get(name, 0) != want:
                        raise CheckpointConflict(
                            f"checkpoint of {name!r} is {stored.get(name, 0)}, expected {want}"
                        )
                set_source = False
                if source is not None:
                    have = pipe.get(src_key)
                    if have is None:
                        set_source = True
                    elif have.decode() != source:
                        raise SourceMismatch(have.decode(), source)
                collections = sorted({f.collection for f in buffer.docs.values()})
                if gen is not None:
                    phys = {c: physical(c, gen) for c in collections}
                elif collections:
                    found = pipe.hmget(self._live_key, collections)
                    phys = {c: (p.decode() if p else c)
                            for c, p in zip(collections, found, strict=True)}
                else:
                    phys = {}
                pipe.multi()
                if set_source and source is not None:
                    pipe.set(src_key, source)
                for f in buffer.docs.values():
                    c = phys[f.collection]
                    dk, ik = self._doc_key(c, f.key), self._idx_key(c)
                    if f.deleted:
                        pipe.delete(dk)
                        pipe.zrem(ik, f.key)
                        continue
                    if f.doc is not None:
                        pipe.delete(dk)
                        if f.doc:
                            pipe.hset(dk, mapping={k: compact_dumps(v) for k, v in f.doc.items()})
                        else:
                            pipe.hset(dk, "__empty__", "1")
                        pipe.zadd(ik, {f.key: f.order})
                        continue
                    if f.fields:
                        pipe.hset(dk, mapping={k: compact_dumps(v) for k, v in f.fields.items()})
                    for name, by in (f.incrs or {}).items():
                        pipe.hincrby(dk, name, by)
                    if not f.fields and not f.incrs:
                        pipe.hsetnx(dk, "__empty__", "1")
                    pipe.zadd(ik, {f.key: f.order}, nx=True)
                now = datetime.now(UTC).isoformat()
                if checkpoints:
                    pipe.hset(cp_key, mapping={
                        name: compact_dumps({"position": pos, "updated_at": now})
                        for name, pos in checkpoints.items()
                    })
                if gen is not None:
                    pipe.hset(self._touched_key, gen, time.time())
                pipe.execute()
        except redis.WatchError:
            raise CheckpointConflict("another projector (or a replay) committed first") from None


def new_store(cls: type[RedisReadStore] = RedisReadStore) -> RedisReadStore:
    return cls(require_redis(), prefix="t_" + uuid.uuid4().hex[:12])


@pytest.fixture
def store() -> Iterator[RedisReadStore]:
    s = new_store()
    yield s
    s.erase()
    s.close()


def snapshot(store: RedisReadStore) -> dict[str, Any]:
    """Every key under the store's prefix (prefix stripped) and its raw value, with the parts a
    commit takes from the clock (checkpoints' updated_at, staging times) blanked."""
    c, p = store.client, store.prefix
    out: dict[str, Any] = {}
    for raw_key in c.scan_iter(match=f"{p}:*", count=1000):
        key = raw_key.decode()[len(p) + 1:]
        kind = c.type(raw_key).decode()
        value: Any
        if kind == "string":
            value = c.get(raw_key)
        elif kind == "hash":
            value = c.hgetall(raw_key)
            if key.startswith("checkpoints"):
                value = {k: {**json.loads(v), "updated_at": "-"} for k, v in value.items()}
            elif key == "staging:touched":
                value = dict.fromkeys(value, "-")
        elif kind == "zset":
            value = c.zrange(raw_key, 0, -1, withscores=True)
        else:
            value = kind
        out[key] = (kind, value)
    return out


def commit(store: ReadStore, writes: list[Write], cp: dict[str, int], expected: dict[str, int],
           source: str | None = None) -> None:
    buf = WriteBuffer()
    buf.extend(writes)
    store.commit(buf, cp, expected, source=source)


# ---- the checks: refused before anything is written ------------------------------------------
def test_a_moved_checkpoint_raises_and_writes_nothing(store: RedisReadStore) -> None:
    commit(store, [Put("users", "a", {"v": 1}, 1)], {"p": 5, "q": 2}, {}, source="log-a")
    before = snapshot(store)
    batch: list[Write] = [Put("users", "a", {"v": 2}, 7), Put("users", "new", {}),
                          Delete("users", "a"), Incr("stats", "s", {"n": 1})]
    with pytest.raises(CheckpointConflict) as err:  # the second expected checkpoint moved
        commit(store, batch, {"p": 9, "q": 9}, {"p": 5, "q": 1}, source="log-a")
    assert str(err.value) == "checkpoint of 'q' is 2, expected 1"
    with pytest.raises(CheckpointConflict) as err:  # missing counts as 0
        commit(store, batch, {"r": 9}, {"r": 3})
    assert str(err.value) == "checkpoint of 'r' is 0, expected 3"
    assert snapshot(store) == before
    store.client.delete(store._source_key(None))
    before = snapshot(store)
    with pytest.raises(CheckpointConflict) as err:  # a source to set: not set either
        commit(store, batch, {"p": 9}, {"p": 4}, source="log-b")
    assert str(err.value) == "checkpoint of 'p' is 5, expected 4"
    assert snapshot(store) == before


def test_a_source_mismatch_raises_and_writes_nothing(store: RedisReadStore) -> None:
    commit(store, [Put("users", "a", {"v": 1})], {"p": 1}, {}, source="log-a")
    before = snapshot(store)
    with pytest.raises(SourceMismatch) as err:
        commit(store, [Put("users", "a", {"v": 2}), Delete("users", "b")], {"p": 2}, {"p": 1},
               source="log-b")
    assert (err.value.stored, err.value.given) == ("log-a", "log-b")
    assert snapshot(store) == before


def test_the_source_is_set_when_absent_and_kept_when_equal(store: RedisReadStore) -> None:
    commit(store, [], {"p": 1}, {})
    assert store.source() is None  # no source given: none recorded
    commit(store, [Put("c", "k", {})], {"p": 2}, {"p": 1}, source="log-é")
    assert store.source() == "log-é"
    commit(store, [Put("c", "k2", {})], {"p": 3}, {"p": 2}, source="log-é")
    commit(store, [Put("c", "k3", {})], {"p": 4}, {"p": 3})  # None: not checked
    assert store.source() == "log-é" and store.count("c") == 3 and store.checkpoint("p") == 4


# ---- where documents go ----------------------------------------------------------------------
def test_a_live_commit_writes_to_the_physical_name_in_the_live_map(store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    c.hset(f"{p}:live", mapping={"users": "users~g1", "blank": ""})
    commit(store, [Put("users", "a", {"v": 1}, 3), Put("other", "b", {"v": 2}),
                   Put("blank", "c", {"v": 3})], {"p": 1}, {})
    assert c.hgetall(f"{p}:doc:users~g1:a") == {b"v": b"1"}
    assert c.zrange(f"{p}:idx:users~g1", 0, -1, withscores=True) == [(b"a", 3.0)]
    assert not c.exists(f"{p}:doc:users:a", f"{p}:idx:users")
    assert c.hgetall(f"{p}:doc:other:b") == {b"v": b"2"}  # not in the map: its own name
    assert c.hgetall(f"{p}:doc:blank:c") == {b"v": b"3"}  # empty in the map: its own name
    assert store.get("users", "a") == {"v": 1}


def test_a_commit_after_a_swap_writes_to_the_new_generation(store: RedisReadStore) -> None:
    commit(store, [Put("users", "old", {})], {"p": 1}, {})
    staged = store.stage(["users"], ["p"], None)
    commit(staged, [Put("users", "new", {})], {"p": 1}, {})
    store.swap(staged)
    commit(store, [Put("users", "late", {"n": 1})], {"p": 2}, {"p": 1})
    c, p, gen = store.client, store.prefix, staged.gen
    assert c.hgetall(f"{p}:doc:users~{gen}:late") == {b"n": b"1"}
    assert not c.exists(f"{p}:doc:users:late")
    assert [d["_key"] for d in store.documents("users")] == ["late", "new"]


def test_a_staged_commit_writes_its_generation_and_touches_it(store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    staged = store.stage(["users"], ["p"], "log-a")
    gen = staged.gen
    c.hset(f"{p}:staging:touched", gen, "0")
    c.hset(f"{p}:live", "users", "users~elsewhere")  # the live map is not for staged commits
    commit(staged, [Put("users", "a", {"v": 1}, 2), Incr("users", "b", {"n": 2})], {"p": 7}, {},
           source="log-a")
    assert c.hgetall(f"{p}:doc:users~{gen}:a") == {b"v": b"1"}
    assert c.hgetall(f"{p}:doc:users~{gen}:b") == {b"n": b"2"}
    assert c.zrange(f"{p}:idx:users~{gen}", 0, -1, withscores=True) == [(b"b", 0.0), (b"a", 2.0)]
    assert json.loads(c.hget(f"{p}:checkpoints~{gen}", "p") or b"")["position"] == 7
    assert not c.exists(f"{p}:checkpoints", f"{p}:doc:users~elsewhere:a", f"{p}:doc:users:a")
    touched = float(c.hget(f"{p}:staging:touched", gen) or 0)
    assert abs(touched - time.time()) < 60
    with pytest.raises(SourceMismatch):
        commit(staged, [Put("users", "x", {})], {"p": 8}, {"p": 7}, source="log-b")
    with pytest.raises(CheckpointConflict):
        commit(staged, [Put("users", "x", {})], {"p": 8}, {"p": 6}, source="log-a")
    assert staged.count("users") == 2 and store.checkpoints() == {}


# ---- the writes --------------------------------------------------------------------------------
def test_a_partial_update_sets_fields_adds_counters_and_keeps_the_order(
        store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    commit(store, [Put("c", "k", {"name": "a", "n": 1, "keep": True}, 5)], {"p": 1}, {})
    commit(store, [Merge("c", "k", {"name": "b"}, 9), Incr("c", "k", {"n": 2, "m": -3}, 9),
                   Merge("c", "new", {"x": None}, 4), Incr("c", "cnt", {"n": 1}, 6),
                   Merge("c", "bare", {}, 8)], {"p": 2}, {"p": 1})
    assert c.hgetall(f"{p}:doc:c:k") == {b"name": b'"b"', b"n": b"3", b"keep": b"true",
                                         b"m": b"-3"}
    assert c.hgetall(f"{p}:doc:c:new") == {b"x": b"null"}
    assert c.hgetall(f"{p}:doc:c:cnt") == {b"n": b"1"}
    assert c.hgetall(f"{p}:doc:c:bare") == {b"__empty__": b"1"}
    # ZADD NX: a partial update never moves a document that is already listed.
    assert c.zrange(f"{p}:idx:c", 0, -1, withscores=True) == [
        (b"new", 4.0), (b"k", 5.0), (b"cnt", 6.0), (b"bare", 8.0)]
    commit(store, [Merge("c", "bare", {}, 1)], {"p": 3}, {"p": 2})  # HSETNX: stays as it is
    assert c.hgetall(f"{p}:doc:c:bare") == {b"__empty__": b"1"}
    assert store.get("c", "bare") == {} and store.get("c", "k") == {
        "name": "b", "n": 3, "keep": True, "m": -3}


def test_a_whole_document_replaces_the_stored_one_and_its_order(store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    commit(store, [Put("c", "k", {"a": 1, "b": 2}, 5), Put("c", "e", {"z": 1}, 1)], {"p": 1}, {})
    commit(store, [Put("c", "k", {"b": [1, {"x": "y"}]}, 2), Put("c", "e", {}, 3)], {"p": 2},
           {"p": 1})
    assert c.hgetall(f"{p}:doc:c:k") == {b"b": b'[1,{"x":"y"}]'}
    assert c.hgetall(f"{p}:doc:c:e") == {b"__empty__": b"1"}
    assert c.zrange(f"{p}:idx:c", 0, -1, withscores=True) == [(b"k", 2.0), (b"e", 3.0)]
    assert store.get("c", "e") == {}


def test_a_deleted_document_leaves_its_hash_and_its_index(store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    commit(store, [Put("c", "k", {"a": 1}), Put("c", "j", {"a": 2})], {"p": 1}, {})
    commit(store, [Delete("c", "k"), Delete("c", "never")], {"p": 2}, {"p": 1})
    assert not c.exists(f"{p}:doc:c:k")
    assert c.zrange(f"{p}:idx:c", 0, -1) == [b"j"]
    assert store.get("c", "k") is None and store.count("c") == 1


def test_a_write_that_fails_does_not_stop_the_others_as_with_exec() -> None:
    """HINCRBY on a field that holds 1.5 fails; as with MULTI/EXEC, the other writes and the
    checkpoint are applied and the error is raised afterwards."""
    stores = [new_store(), new_store(PipelineCommitStore)]
    try:
        for s in stores:
            commit(s, [Put("c", "k", {"n": 1.5})], {"p": 1}, {})
            with pytest.raises(redis.ResponseError, match="not an integer"):
                commit(s, [Incr("c", "k", {"n": 1}), Put("c", "other", {"v": 1}),
                           Incr("c", "k2", {"m": 1})], {"p": 2}, {"p": 1}, source="log-a")
            assert s.get("c", "k") == {"n": 1.5} and s.get("c", "other") == {"v": 1}
            assert s.get("c", "k2") == {"m": 1}
            assert s.checkpoint("p") == 2 and s.source() == "log-a"
        assert snapshot(stores[0]) == snapshot(stores[1])
    finally:
        for s in stores:
            s.erase()
            s.close()


def test_unicode_values_and_keys_with_colons_reach_redis_as_python_encoded_them(
        store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    doc = {"naïve ✓": "zoë 😀 \"quoted\" \\ back", "nested": {"ключ": ["€", 1.5]}}
    commit(store, [Put("cöl:x", "a:b:ü:😀", doc, 1)], {"proj:é": 1}, {})
    raw = f"{p}:doc:cöl:x:a:b:ü:😀".encode()
    assert c.hgetall(raw) == {k.encode(): compact_dumps(v).encode() for k, v in doc.items()}
    assert c.zrange(f"{p}:idx:cöl:x".encode(), 0, -1) == ["a:b:ü:😀".encode()]
    assert store.get("cöl:x", "a:b:ü:😀") == doc
    assert [d["_key"] for d in store.documents("cöl:x")] == ["a:b:ü:😀"]
    commit(store, [Merge("cöl:x", "a:b:ü:😀", {"naïve ✓": "ü"}), Incr("cöl:x", "a:b:ü:😀", {"ñ": 2})],
           {"proj:é": 2}, {"proj:é": 1})
    assert store.get("cöl:x", "a:b:ü:😀") == {**doc, "naïve ✓": "ü", "ñ": 2}
    assert store.checkpoint("proj:é") == 2


def test_big_integers_are_never_rounded(store: RedisReadStore) -> None:
    c, p = store.client, store.prefix
    commit(store, [Put("c", "k", {"big": BIG, "neg": -BIG - 1, "f": 0.1}),
                   Incr("c", "n", {"n": 2**62})], {"p": 2**53}, {})
    assert c.hget(f"{p}:doc:c:k", "big") == str(BIG).encode()
    assert store.get("c", "k") == {"big": BIG, "neg": -BIG - 1, "f": 0.1}
    # 2**53 + 1 and 2**53 are the same double: a script comparing numbers would accept this.
    with pytest.raises(CheckpointConflict) as err:
        commit(store, [Put("c", "x", {})], {"p": 1}, {"p": 2**53 + 1})
    assert str(err.value) == f"checkpoint of 'p' is {2**53}, expected {2**53 + 1}"
    commit(store, [Incr("c", "n", {"n": 2**62 - 1})], {"p": BIG}, {"p": 2**53})
    assert store.get("c", "n") == {"n": BIG} and store.checkpoint("p") == BIG
    with pytest.raises(CheckpointConflict):  # the same double as BIG, too
        commit(store, [Put("c", "x", {})], {"p": 1}, {"p": BIG - 1})
    commit(store, [], {"p": 1}, {"p": BIG})
    assert store.get("c", "x") is None and store.checkpoint("p") == 1


def test_many_fields_and_documents_in_one_commit(store: RedisReadStore) -> None:
    """More arguments than Lua's unpack takes at once (the script sets fields in chunks)."""
    doc = {f"f{i}": i for i in range(3000)}
    commit(store, [Put("c", "wide", doc, 1), *(Put("c", f"k{i}", {"i": i}, 2) for i in range(2000)),
                   Merge("c", "m", {f"g{i}": i for i in range(600)}),
                   Incr("c", "m", {f"h{i}": i for i in range(600)})],
           {f"p{i}": i for i in range(1000)}, {})
    assert store.get("c", "wide") == doc and store.count("c") == 2002
    assert store.get("c", "m") == {**{f"g{i}": i for i in range(600)},
                                   **{f"h{i}": i for i in range(600)}}
    assert len(store.checkpoints()) == 1000


# ---- the round trip ----------------------------------------------------------------------------
def test_a_commit_and_checkpoints_and_source_are_one_round_trip_each(
        store: RedisReadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    commit(store, [Put("c", "warm", {})], {"p": 1}, {})  # the script is loaded by now
    sent: list[bytes] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def spy(self: Any, command: Any, *args: Any, **kw: Any) -> Any:
        sent.append(b"".join(command) if isinstance(command, list) else command)
        return real(self, command, *args, **kw)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", spy)
    commit(store, [Put("c", "a", {"v": 1}), Merge("c", "b", {"v": 2}), Incr("s", "s", {"n": 1})],
           {"p": 2}, {"p": 1}, source="log-a")
    assert len(sent) == 1 and b"EVALSHA" in sent[0]
    sent.clear()
    assert store.checkpoints_and_source()[1] == "log-a"
    assert len(sent) == 1 and b"HGETALL" in sent[0] and b"GET" in sent[0]


def test_the_script_is_loaded_again_when_redis_lost_it(store: RedisReadStore) -> None:
    store._commit_script.sha = "0" * 40  # as after SCRIPT FLUSH or a restart: NOSCRIPT
    commit(store, [Put("c", "k", {"v": 1})], {"p": 1}, {})
    assert store.get("c", "k") == {"v": 1}


def test_an_unreachable_redis_is_a_store_unavailable_error() -> None:
    down = RedisReadStore("redis://127.0.0.1:1/0", prefix="t_down")
    with pytest.raises(StoreUnavailableError, match="not reachable"):
        commit(down, [Put("c", "k", {})], {"p": 1}, {})
    with pytest.raises(StoreUnavailableError, match="not reachable"):
        down.checkpoints_and_source()


def test_checkpoints_and_source_equal_the_two_separate_reads(store: RedisReadStore) -> None:
    assert store.checkpoints_and_source() == ({}, None)
    commit(store, [Put("c", "k", {})], {"p": 3, "q": 2**60}, {}, source="log-ü")
    cps, source = store.checkpoints_and_source()
    assert (cps, source) == (store.checkpoints(), store.source())
    assert source == "log-ü" and cps["q"].position == 2**60 and cps["p"].updated_at
    staged = store.stage(["c"], ["p"], "log-new")  # the default: the staged generation's own
    commit(staged, [], {"p": 9}, {})
    assert staged.checkpoints_and_source() == (staged.checkpoints(), "log-new")
    assert staged.checkpoints_and_source()[0]["p"].position == 9
    assert store.checkpoints_and_source() == (store.checkpoints(), "log-ü")


# ---- the script against the commit it replaced ------------------------------------------------
colls = st.sampled_from(["users", "cöl:x", "stats"])
keys = st.sampled_from(["k", "a:b", "ü😀", "k:"])
names = st.sampled_from(["n", "name", "ñ:1"])
values = st.one_of(st.none(), st.booleans(), st.integers(-BIG - 1, BIG),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                   st.lists(st.integers(), max_size=2))
orders = st.one_of(st.integers(-2**60, 2**60), st.floats(-1e6, 1e6))
batch_writes = st.lists(st.one_of(
    st.builds(Put, colls, keys, st.dictionaries(names, values, max_size=3), orders),
    st.builds(Merge, colls, keys, st.dictionaries(names, values, max_size=2), orders),
    st.builds(Incr, colls, keys, st.dictionaries(names, st.integers(-2**40, 2**40), min_size=1,
                                                 max_size=2), orders),
    st.builds(Delete, colls, keys),
), max_size=8)
steps = st.lists(st.tuples(batch_writes, st.sampled_from([None, "log-a", "log-b"]),
                           st.booleans(), st.booleans()), min_size=1, max_size=5)


def run(store: RedisReadStore, steps: list[Any], gen: str | None) -> list[str]:
    """Apply the steps; what each one raised (or "ok")."""
    target: ReadStore = store
    if gen is not None:
        store._stage(gen, None, ["users", "cöl:x", "stats"])
        target = Staged(store, gen, ("users", "cöl:x", "stats"), ("p", "q"))
    outcomes = []
    for i, (writes, source, stale, touch_q) in enumerate(steps):
        buf = WriteBuffer()
        buf.extend(copy.deepcopy(writes))  # the buffer folds the writes' dicts in place
        cps = {"p": i + 1, **({"q": BIG - i} if touch_q else {})}
        held = {n: cp.position for n, cp in target.checkpoints().items()}
        expected = {"p": held.get("p", 0) - (1 if stale else 0)}
        try:
            target.commit(buf, cps, expected, source=source)
            outcomes.append("ok")
        except (CheckpointConflict, SourceMismatch) as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
        except redis.ResponseError:  # e.g. HINCRBY on a field that holds a float
            outcomes.append("ResponseError")
    return outcomes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, staged=st.booleans(), mapped=st.booleans())
def test_the_script_writes_what_the_pipeline_commit_wrote(steps, staged, mapped) -> None:
    script, pipeline = new_store(), new_store(PipelineCommitStore)
    try:
        for s in (script, pipeline):
            if mapped:
                s.client.hset(s._live_key, mapping={"users": "users~m", "stats": ""})
        gen = "g1" if staged else None
        assert run(script, steps, gen) == run(pipeline, steps, gen)
        assert snapshot(script) == snapshot(pipeline)
    finally:
        for s in (script, pipeline):
            s.erase()
            s.close()
