"""The server-backed read store: Redis hashes, each commit written by one Lua script.

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

A commit is ONE round trip: a Lua script (`COMMIT_LUA`) that checks the checkpoints and the
source, resolves each collection's physical name through the live map, and applies the writes.
Redis runs a script atomically, so no other projector's commit and no replay's swap can come in
between the checks and the writes. Readers read the live map and the documents in one MULTI, so
each answer comes from one generation; swaps use WATCH + MULTI/EXEC.
"""

from __future__ import annotations

import json
import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis

from ecommerce.config import redact_url
from ecommerce.domain.events import compact_dumps, iso_utc
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

#: The commit, as one Lua script (run with EVALSHA; redis-py falls back to EVAL on NOSCRIPT).
#: Single-instance Redis (no Cluster): the document and index keys are built in the script from
#: the prefix, the resolved physical name and the document key, so not all keys are in KEYS.
#:
#: KEYS: checkpoints, source, live map, staging:touched.
#: ARGV, flat (no cjson: every value is passed as the string Python encoded, never re-encoded):
#:   prefix, resolve ("1": a live commit, names are collections resolved through the live map;
#:   "0": names are already physical), has_source ("1"/"0"), source, has_gen ("1"/"0"), gen,
#:   touched time; n_expected, then (projection, position) pairs; n_checkpoints, then
#:   (projection, JSON) pairs; n_docs, then per document: name, key, kind, and
#:     kind "D" (deleted):  nothing more;
#:     kind "F" (full doc): order, n_fields, (field, JSON) pairs (none: `__empty__` 1);
#:     kind "P" (partial):  order, n_fields, (field, JSON) pairs, n_incrs, (field, by) pairs.
#: Positions are compared as integer strings (stored: the `"position":n` of the checkpoint's
#: JSON), so positions beyond 2^53 compare exactly.
#: Returns 0 when committed; {1, i, stored JSON or nil} when the i-th expected checkpoint (from
#: 1) differs; {2, stored source} on a source mismatch: then nothing was written. Like EXEC,
#: a write that fails (e.g. HINCRBY on a field that is not an integer) does not stop the others;
#: the first error is raised at the end.
COMMIT_LUA = """
local cp_key, src_key, live_key, touched_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, resolve = ARGV[1], ARGV[2] == '1'
local i = 8

local n = tonumber(ARGV[i]); i = i + 1
for e = 1, n do
  local raw = redis.call('HGET', cp_key, ARGV[i])
  local stored = '0'
  if raw then stored = string.match(raw, '"position":%s*(%-?%d+)%s*[,}]') end
  if stored ~= ARGV[i + 1] then return {1, e, raw} end
  i = i + 2
end

local set_source = false
if ARGV[3] == '1' then
  local have = redis.call('GET', src_key)
  if not have then set_source = true
  elseif have ~= ARGV[4] then return {2, have} end
end

local failed = nil
local function run(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err and not failed then failed = r.err end
end
local function hset_pairs(key, first, count)
  local j = 0
  while j < count do
    local m = math.min(count - j, 256)
    local args = {'HSET', key}
    for k = 0, m - 1 do
      args[#args + 1] = ARGV[first + 2 * (j + k)]
      args[#args + 1] = ARGV[first + 2 * (j + k) + 1]
    end
    run(unpack(args))
    j = j + m
  end
end

if set_source then run('SET', src_key, ARGV[4]) end

local n_cps = tonumber(ARGV[i]); local cps_at = i + 1; i = cps_at + 2 * n_cps
local phys = {}
local n_docs = tonumber(ARGV[i]); i = i + 1
for d = 1, n_docs do
  local name, key, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local c = phys[name]
  if not c then
    c = name
    if resolve then
      local p = redis.call('HGET', live_key, name)
      if p and p ~= '' then c = p end
    end
    phys[name] = c
  end
  local dk, ik = prefix .. ':doc:' .. c .. ':' .. key, prefix .. ':idx:' .. c
  if kind == 'D' then
    run('DEL', dk)
    run('ZREM', ik, key)
  elseif kind == 'F' then
    local order, nf = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    run('DEL', dk)
    if nf > 0 then hset_pairs(dk, i, nf) else run('HSET', dk, '__empty__', '1') end
    i = i + 2 * nf
    run('ZADD', ik, order, key)
  else
    local order, nf = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    if nf > 0 then hset_pairs(dk, i, nf) end
    i = i + 2 * nf
    local ni = tonumber(ARGV[i]); i = i + 1
    for k = 1, ni do
      run('HINCRBY', dk, ARGV[i], ARGV[i + 1])
      i = i + 2
    end
    if nf == 0 and ni == 0 then run('HSETNX', dk, '__empty__', '1') end
    run('ZADD', ik, 'NX', order, key)
  end
end

if n_cps > 0 then hset_pairs(cp_key, cps_at, n_cps) end
if ARGV[5] == '1' then run('HSET', touched_key, ARGV[6], ARGV[7]) end
if failed then return redis.error_reply(failed) end
return 0
"""



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
        self._commit_script = self.client.register_script(COMMIT_LUA)
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
        args: list[Any] = [self.prefix, "1" if gen is None else "0",
                           "0" if source is None else "1", source or "",
                           "0" if gen is None else "1", gen or "",
                           time.time() if gen is not None else ""]
        args.append(len(expected))
        for name, want in expected.items():
            args += (name, str(operator.index(want)))
        now = iso_utc()
        args.append(len(checkpoints))
        for name, pos in checkpoints.items():
            args += (name, _dumps({"position": pos, "updated_at": now}))
        args.append(len(buffer.docs))
        for f in buffer.docs.values():
            args += (f.collection if gen is None else physical(f.collection, gen), f.key)
            if f.deleted:
                args.append("D")
            elif f.doc is not None:
                args += ("F", f.order, len(f.doc))
                for k, v in f.doc.items():
                    args += (k, _dumps(v))
            else:
                fields, incrs = f.fields or {}, f.incrs or {}
                args += ("P", f.order, len(fields))
                for k, v in fields.items():
                    args += (k, _dumps(v))
                args.append(len(incrs))
                for k, by in incrs.items():
                    args += (k, by)
        keys = [self._cp_key(gen), self._source_key(gen), self._live_key, self._touched_key]
        try:
            result = self._commit_script(keys=keys, args=args)
        except redis.ConnectionError as exc:
            raise StoreUnavailableError(self._unreachable(exc)) from None
        if result == 0:
            return
        if result[0] == 1:
            name, want = list(expected.items())[int(result[1]) - 1]
            raw = result[2] if len(result) > 2 else None
            have = json.loads(raw)["position"] if raw is not None else 0
            raise CheckpointConflict(f"checkpoint of {name!r} is {have}, expected {want}")
        raise SourceMismatch(_text(result[1]), cast(str, source))

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
        return self._parse_checkpoints(self._call(lambda: self.client.hgetall(self._cp_key(gen))))

    @staticmethod
    def _parse_checkpoints(raw: Mapping[Any, Any]) -> dict[str, Checkpoint]:
        out = {}
        for k, v in raw.items():
            data = json.loads(v)
            out[_text(k)] = Checkpoint(_text(k), data["position"], data["updated_at"])
        return out

    def checkpoints_and_source(self) -> tuple[dict[str, Checkpoint], str | None]:
        """The live checkpoints and source in one round trip (a pipeline, not a transaction)."""
        def read() -> tuple[dict[bytes, bytes], bytes | None]:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._cp_key(None))
                pipe.get(self._source_key(None))
                raw, source = pipe.execute()
            return raw, source

        raw, source = self._call(read)
        return self._parse_checkpoints(raw), (_text(source) if source is not None else None)

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
