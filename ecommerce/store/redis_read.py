"""The server-backed read store: Redis hashes, written with WATCH + MULTI/EXEC.

Layout under a prefix P:
- `P:doc:<collection>:<key>`  hash, one field per document field, values JSON-encoded
  (an integer stays a plain integer string, so HINCRBY works on counters);
- `P:idx:<collection>`        sorted set of the collection's keys, scored by `order`;
- `P:checkpoints`             hash projection -> {"position": n, "updated_at": iso}.
The checkpoint hash is WATCHed, so a batch commits only if no other projector moved it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from ecommerce.domain.readmodel import WriteBuffer
from ecommerce.store.base import StoreUnavailableError
from ecommerce.store.read_base import Checkpoint, CheckpointConflict, ReadStore

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class RedisReadStore(ReadStore):
    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "labkit") -> None:
        self.url, self.prefix = url, prefix
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        self._cp_key = f"{prefix}:checkpoints"

    def _doc_key(self, collection: str, key: str) -> str:
        return f"{self.prefix}:doc:{collection}:{key}"

    def _idx_key(self, collection: str) -> str:
        return f"{self.prefix}:idx:{collection}"

    def commit(
        self, buffer: WriteBuffer, checkpoints: Mapping[str, int], expected: Mapping[str, int]
    ) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(self._cp_key)
                raw = pipe.hgetall(self._cp_key)
                stored = {k.decode(): json.loads(v)["position"] for k, v in raw.items()}
                for name, want in expected.items():
                    if stored.get(name, 0) != want:
                        raise CheckpointConflict(
                            f"checkpoint of {name!r} is {stored.get(name, 0)}, expected {want}"
                        )
                pipe.multi()
                for f in buffer.docs.values():
                    dk, ik = self._doc_key(f.collection, f.key), self._idx_key(f.collection)
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
                    pipe.hset(self._cp_key, mapping={
                        name: _dumps({"position": pos, "updated_at": now})
                        for name, pos in checkpoints.items()
                    })
                pipe.execute()
        except redis.WatchError:
            raise CheckpointConflict("another projector committed first") from None
        except redis.ConnectionError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    def _unreachable(self, exc: Exception) -> str:
        return (f"Redis at {self.url} is not reachable ({exc}); start it or unset LABKIT_REDIS_URL "
                "to use the embedded SQLite read store")

    def checkpoints(self) -> dict[str, Checkpoint]:
        raw = self.client.hgetall(self._cp_key)
        out = {}
        for k, v in raw.items():
            data = json.loads(v)
            out[k.decode()] = Checkpoint(k.decode(), data["position"], data["updated_at"])
        return out

    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
        return {k.decode(): json.loads(v) for k, v in raw.items() if k != b"__empty__"}

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        dk = self._doc_key(collection, key)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(dk)
            pipe.hgetall(dk)
            exists, raw = pipe.execute()
        return self._decode(raw) if exists else None

    def list(self, collection: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        end = -1 if limit is None else offset + limit - 1
        # Same order as SQLite: by score, then key (ZRANGE orders equal scores lexically).
        keys = [k.decode() for k in self.client.zrange(self._idx_key(collection), offset, end)]
        with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hgetall(self._doc_key(collection, k))
            raws = pipe.execute()
        return [{**self._decode(raw), "_key": k} for k, raw in zip(keys, raws, strict=True)]

    def count(self, collection: str) -> int:
        return int(self.client.zcard(self._idx_key(collection)))

    def reset(self, collections: list[str], projections: list[str]) -> None:
        while True:
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    idx = [self._idx_key(c) for c in collections]
                    pipe.watch(self._cp_key, *idx)
                    doc_keys = [
                        self._doc_key(c, k.decode())
                        for c, ik in zip(collections, idx, strict=True)
                        for k in pipe.zrange(ik, 0, -1)
                    ]
                    pipe.multi()
                    for i in range(0, len(doc_keys), 1000):
                        pipe.delete(*doc_keys[i : i + 1000])
                    if idx:
                        pipe.delete(*idx)
                    if projections:
                        pipe.hdel(self._cp_key, *projections)
                    pipe.execute()
                    return
            except redis.WatchError:
                continue

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None

    def close(self) -> None:
        self.client.close()
