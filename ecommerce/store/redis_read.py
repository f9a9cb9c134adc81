"""The server-backed read store: Redis hashes, written with WATCH + MULTI/EXEC.

Layout under a prefix P:
- `P:doc:<physical>:<key>`  hash, one field per document field, values JSON-encoded
  (an integer stays a plain integer string, so HINCRBY works on counters);
- `P:idx:<physical>`        sorted set of the collection's keys, scored by `order`;
- `P:live`                  hash collection -> physical name (absent: the collection's name);
- `P:checkpoints`           hash projection -> {"position": n, "updated_at": iso};
  a staging generation G has its own `P:checkpoints~G`;
- `P:source`, `P:source~G`  the id of the event log the (staged) model is built from;
- `P:note`                  what the last automatic rebuild said;
- `P:staging`, `P:staging:touched`  staging generations: their collections, last commit time.

A live commit WATCHes the checkpoints, the live map and the source, so it commits only if no
other projector moved a checkpoint and no replay swapped a generation in meanwhile. Readers
read the live map and the documents in one MULTI, so each answer comes from one generation.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import redis

from ecommerce.config import redact_url
from ecommerce.domain.events import compact_dumps
from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.store.base import StoreUnavailableError
from ecommerce.store.read_base import (
    Checkpoint,
    CheckpointConflict,
    ReadStore,
    SourceMismatch,
    physical,
)

T = TypeVar("T")
_dumps = compact_dumps
#: Documents deleted per round trip when a generation is dropped.
DROP_CHUNK = 1000



def _text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; str if it decodes responses)."""
    return value.decode() if isinstance(value, bytes) else value

class RedisReadStore(ReadStore):
    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "labkit") -> None:
        self.url, self.prefix = url, prefix
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        self._live_key = f"{prefix}:live"
        self._note_key = f"{prefix}:note"
        self._staging_key = f"{prefix}:staging"
        self._touched_key = f"{prefix}:staging:touched"
        #: The physical name each collection had when last read (a guess, checked each read).
        self._seen: dict[str, str] = {}

    def erase(self) -> int:
        """Delete every key of this read store (everything under `<prefix>:`), whatever wrote
        it: documents, checkpoints, generations, projections that are no longer deployed.
        Other prefixes are not touched. Returns how many keys were deleted."""
        def erase() -> int:
            deleted = 0
            batch: list[bytes] = []
            literal = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)  # glob characters
            for key in self.client.scan_iter(match=f"{literal}:*", count=DROP_CHUNK):
                batch.append(key)
                if len(batch) >= DROP_CHUNK:
                    deleted += int(self.client.delete(*batch))
                    batch.clear()
            if batch:
                deleted += int(self.client.delete(*batch))
            return deleted

        self._seen.clear()
        return self._call(erase)

    def _doc_key(self, phys: str, key: str) -> str:
        return f"{self.prefix}:doc:{phys}:{key}"

    def _idx_key(self, phys: str) -> str:
        return f"{self.prefix}:idx:{phys}"

    def _cp_key(self, gen: str | None) -> str:
        base = f"{self.prefix}:checkpoints"
        return base if gen is None else physical(base, gen)

    def _source_key(self, gen: str | None) -> str:
        base = f"{self.prefix}:source"
        return base if gen is None else physical(base, gen)

    def _unreachable(self, exc: Exception) -> str:
        where = redact_url(self.url)
        if isinstance(exc, redis.AuthenticationError):
            return (f"Redis at {where} refused the connection's credentials ({exc}); put the "
                    "password in LABKIT_REDIS_URL as redis://:<password>@<host>:6379/0 (on the "
                    "cluster it is the `url` key of the redis-credentials Secret)")
        return (f"Redis at {where} is not reachable ({exc}); start it or unset LABKIT_REDIS_URL "
                "to use the embedded SQLite read store")

    def _call(self, op: Callable[[], T]) -> T:
        try:
            return op()
        except redis.ConnectionError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    # ---- writing ------------------------------------------------------------------------------
    def _commit(self, buffer: WriteBuffer, checkpoints: Mapping[str, int],
                expected: Mapping[str, int], source: str | None, gen: str | None) -> None:
        cp_key, src_key = self._cp_key(gen), self._source_key(gen)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(cp_key, src_key, *([self._live_key] if gen is None else []))  # type: ignore[no-untyped-call]
                raw = pipe.hgetall(cp_key)
                stored = {_text(k): json.loads(v)["position"] for k, v in raw.items()}
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
                    elif _text(have) != source:
                        raise SourceMismatch(_text(have), source)
                collections = sorted({f.collection for f in buffer.docs.values()})
                if gen is not None:
                    phys = {c: physical(c, gen) for c in collections}
                elif collections:
                    found = pipe.hmget(self._live_key, collections)
                    phys = {c: (_text(p) if p else c)
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
                            pipe.hset(dk, mapping={k: _dumps(v) for k, v in f.doc.items()})
                        else:
                            pipe.hset(dk, "__empty__", "1")
                        pipe.zadd(ik, {f.key: f.order})
                        continue
                    if f.fields:
                        pipe.hset(dk, mapping={k: _dumps(v) for k, v in f.fields.items()})
                    for name, by in (f.incrs or {}).items():
                        pipe.hincrby(dk, name, by)
                    if not f.fields and not f.incrs:
                        pipe.hsetnx(dk, "__empty__", "1")
                    pipe.zadd(ik, {f.key: f.order}, nx=True)
                now = datetime.now(UTC).isoformat()
                if checkpoints:
                    pipe.hset(cp_key, mapping={
                        name: _dumps({"position": pos, "updated_at": now})
                        for name, pos in checkpoints.items()
                    })
                if gen is not None:
                    pipe.hset(self._touched_key, gen, time.time())
                pipe.execute()
        except redis.WatchError:
            raise CheckpointConflict("another projector (or a replay) committed first") from None
        except redis.ConnectionError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    # ---- generations --------------------------------------------------------------------------
    def _stage(self, gen: str, source: str | None, collections: Sequence[str]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._staging_key, gen, json.dumps(list(collections)))
            pipe.hset(self._touched_key, gen, time.time())
            if source is not None:
                pipe.set(self._source_key(gen), source)
            self._call(pipe.execute)

    def _stale(self, older_than: float) -> dict[str, list[str]]:
        def read() -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._staging_key)
                pipe.hgetall(self._touched_key)
                staged, touched = pipe.execute()
            return staged, touched

        staged, touched = self._call(read)
        limit = time.time() - older_than
        return {_text(g): json.loads(cols) for g, cols in staged.items()
                if float(touched.get(g, 0)) < limit}

    def _swap(self, gen: str, collections: Sequence[str], projections: Sequence[str],
              note: str | None) -> list[str]:
        keys = [self._live_key, self._cp_key(None), self._cp_key(gen), self._source_key(gen)]
        while True:
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    found = pipe.hmget(self._live_key, list(collections)) if collections else []
                    old = [_text(p) if p else c for c, p in zip(collections, found, strict=True)]
                    staged = pipe.hgetall(self._cp_key(gen))
                    source = pipe.get(self._source_key(gen))
                    pipe.multi()
                    if collections:
                        pipe.hset(self._live_key,
                                  mapping={c: physical(c, gen) for c in collections})
                    if projections:
                        pipe.hdel(self._cp_key(None), *projections)
                    mine: dict[Any, Any] = {k: v for k, v in staged.items()
                                            if _text(k) in projections}
                    if mine:
                        pipe.hset(self._cp_key(None), mapping=mine)
                    pipe.delete(self._cp_key(gen))
                    pipe.hdel(self._staging_key, gen)
                    pipe.hdel(self._touched_key, gen)
                    if source is not None:
                        pipe.set(self._source_key(None), source)
                        pipe.delete(self._source_key(gen))
                    if note is None:
                        pipe.delete(self._note_key)
                    else:
                        pipe.set(self._note_key, note)
                    pipe.execute()
                    return old
            except redis.WatchError:
                continue
            except redis.ConnectionError as exc:
                raise StoreUnavailableError(self._unreachable(exc)) from None

    def _drop(self, physicals: Sequence[str], gen: str | None) -> None:
        def drop() -> None:
            for c in physicals:
                ik = self._idx_key(c)
                while True:
                    keys = cast(list[bytes], self.client.zrange(ik, 0, DROP_CHUNK - 1))
                    if not keys:
                        break
                    with self.client.pipeline(transaction=False) as pipe:
                        pipe.delete(*[self._doc_key(c, _text(k)) for k in keys])
                        pipe.zrem(ik, *keys)
                        pipe.execute()
                self.client.delete(ik)
            if gen is not None:
                self.client.delete(self._cp_key(gen), self._source_key(gen))
                self.client.hdel(self._staging_key, gen)
                self.client.hdel(self._touched_key, gen)

        self._call(drop)

    # ---- reading ------------------------------------------------------------------------------
    def _checkpoints(self, gen: str | None) -> dict[str, Checkpoint]:
        raw = self._call(lambda: self.client.hgetall(self._cp_key(gen)))
        out = {}
        for k, v in raw.items():
            data = json.loads(v)
            out[_text(k)] = Checkpoint(_text(k), data["position"], data["updated_at"])
        return out

    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
        return {_text(k): json.loads(v) for k, v in raw.items() if k != b"__empty__"}

    def _read(self, collection: str, gen: str | None,
              ops: Callable[[Any, str], None]) -> list[Any]:
        """Run `ops(pipe, physical)` in one MULTI with a read of the live map, and again if a
        swap changed the collection's physical name meanwhile. Returns ops' results."""
        try:
            if gen is not None:
                with self.client.pipeline(transaction=False) as pipe:
                    ops(pipe, physical(collection, gen))
                    return pipe.execute()
            phys = self._seen.get(collection, collection)
            while True:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.hget(self._live_key, collection)
                    ops(pipe, phys)
                    live, *results = pipe.execute()
                now = _text(live) if live else collection
                if now == phys:
                    return results
                phys = self._seen[collection] = now
        except redis.ConnectionError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    def _get(self, collection: str, key: str, gen: str | None) -> dict[str, Any] | None:
        def ops(pipe: Any, phys: str) -> None:
            pipe.exists(self._doc_key(phys, key))
            pipe.hgetall(self._doc_key(phys, key))

        exists, raw = self._read(collection, gen, ops)
        return self._decode(raw) if exists else None

    def _list(self, collection: str, limit: int | None, offset: int,
              gen: str | None) -> list[dict[str, Any]]:
        end = -1 if limit is None else offset + limit - 1
        keys: list[str] = []

        # Same order as SQLite: by score, then key (ZRANGE orders equal scores lexically).
        # Keys and documents in one MULTI: a swap can never pair one generation's keys with
        # another's documents.
        def ops(pipe: Any, phys: str) -> None:
            keys.clear()
            members = cast(list[bytes], self.client.zrange(self._idx_key(phys), offset, end))
            keys.extend(_text(k) for k in members)
            for k in keys:
                pipe.hgetall(self._doc_key(phys, k))

        raws = self._read(collection, gen, ops)
        return [{**self._decode(raw), "_key": k} for k, raw in zip(keys, raws, strict=True)]

    def _count(self, collection: str, gen: str | None) -> int:
        (n,) = self._read(collection, gen, lambda pipe, phys: pipe.zcard(self._idx_key(phys)))
        return int(n)

    def _source(self, gen: str | None) -> str | None:
        raw = self._call(lambda: self.client.get(self._source_key(gen)))
        return _text(raw) if raw is not None else None

    def note(self) -> str | None:
        raw = self._call(lambda: self.client.get(self._note_key))
        return _text(raw) if raw is not None else None

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    def close(self) -> None:
        self.client.close()
