"""The server-backed event store: one PostgreSQL table, appended to by SQL functions.

Each append is ONE round trip: `SELECT * FROM <schema>.append_event_v2(...)` (one event) or
`append_events_v2(...)` (a batch, as arrays) on an autocommit connection, so the call is its own
transaction. The function checks for already-stored event ids (idempotent retries), checks the
expected version (raising SQLSTATE LK409, which becomes `ConcurrencyError`) and inserts.

Why appends are serialised
--------------------------
Positions come from an identity sequence, and `nextval` is handed out when a row is inserted,
not when its transaction commits. Without care, transaction A takes position 7, transaction B
takes position 8 and commits first; a reader that polls `read_all(after_position=6)` sees 8,
remembers 8, and never sees 7 when A commits a moment later. That is a silently lost event for
every projector (tests/integration/test_global_order.py shows it happening without the lock).

So the function first takes a transaction-level advisory lock (`pg_advisory_xact_lock`) that
every append to this schema shares, and only then lets the insert draw positions. The lock is
held until the transaction ends, and PostgreSQL's commit makes the transaction visible to new
snapshots (WAL flush, then the proc array update) *before* it releases its locks. The next
appender can therefore draw positions only after every lower position is already visible: commit
order equals position order, and a reader that has seen position P will never later see a new
event below P. Reads take no lock and are never blocked. The price: appends to one schema run
one at a time, each holding the lock through its commit (WAL flush included), so concurrent
writers add no throughput (about 2,500 appends/s in total on the lab VM, the same as one
writer). That is plenty for the lab; a system that needs more would shard the log.

The lock is taken in its own statement: the function is VOLATILE, so in READ COMMITTED each
following statement (id check, version check) runs on a fresh snapshot that already includes
every append committed before the lock was granted.

Durability
----------
With `synchronous_commit = on` an append holds that lock through its WAL flush, so the flush
time bounds the appends per second of the whole lab (with a slow disk, a few hundred). The lab
therefore sets `synchronous_commit = off` on its sessions by default
(`LABKIT_PG_SYNCHRONOUS_COMMIT`; README "Settings"): commits return once written to the WAL,
which the WAL writer flushes within about 0.6 s. Order and consistency are unchanged (a crash of
the *server* loses a tail of the log, never a hole); `on` or `server` restores the flush.

Each append also sends `NOTIFY` (delivered when it commits) with its stream, types and last
position, on the channel `<schema>.events` and on each of its types' channels, so followers
wait for the appends they care about instead of polling (`waiter`,
`ecommerce.store.postgres_notify`). The notifying commits are already serialised by the lock
above, so this adds no contention.

Sessions run with `enable_seqscan = off` (see `__init__`): every read the lab makes is an
index range, and a log that grew since it was last analyzed must not be scanned whole.

Data and metadata are `json` (not `jsonb`): stored as the exact text labkit encoded, so key
order survives as it does in SQLite, and reads hand that text to `RecordedEvent` undecoded.

Setup (schema, table, functions) runs at construction under a second advisory lock, so two
processes starting together do not race their `CREATE ... IF NOT EXISTS` statements.
"""

from __future__ import annotations

import re
import threading
import uuid
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg import sql
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult

from ecommerce.domain.events import (
    EventValidationError,
    NewEvent,
    RecordedEvent,
    UpcasterRegistry,
)
from ecommerce.store.base import (
    AppendResult,
    ConcurrencyError,
    EventStore,
    ExpectedVersion,
    StoreUnavailableError,
    prepare_append,
)
from ecommerce.store.postgres_notify import (
    FALLBACK_POLL,
    Interest,
    NotifyWaiter,
    notify_channel,
    typed_channel,
    typed_channel_sql,
)
from ecommerce.store.sqlite_events import _already_stored

T = TypeVar("T")

#: First half of the advisory lock keys; the second half is derived from the schema name.
_APPEND_LOCK_CLASS = 0x4C4B4556  # "LKEV"
_INIT_LOCK_CLASS = 0x4C4B494E  # "LKIN"
#: SQLSTATE the append function raises when the expected version does not match.
_SQLSTATE_CONFLICT = "LK409"
CONNECT_TIMEOUT_S = 5
#: How long an append or read waits for a free connection when all are busy.
POOL_TIMEOUT_S = 10.0

_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)
"""
# The log's identity (`log_id`), made once with the table and renewed by `wipe`.
_META_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.meta (key text PRIMARY KEY, value text NOT NULL)
"""

# Both append functions share these steps. The dedicated one-event function exists because
# array parameters cost PostgreSQL measurably more per call than scalars (about 40% of the
# function's time), and most appends carry one event.
_CHECK_STORED = """
    IF EXISTS (SELECT 1 FROM {schema}.events AS e WHERE e.event_id = ANY ({ids})) THEN
        RETURN QUERY
            SELECT e.position, e.stream_id, e.version, false, e.recorded_at
            FROM {schema}.events AS e
            WHERE e.event_id = ANY ({ids}) ORDER BY e.position;
        RETURN;
    END IF;
"""
_CHECK_VERSION = """
    SELECT COALESCE(MAX(e.version), 0) INTO v_current
        FROM {schema}.events AS e WHERE e.stream_id = p_stream;
    IF p_expected <> 'any' AND v_current <>
            (CASE WHEN p_expected = 'none' THEN 0 ELSE p_expected::bigint END) THEN
        RAISE EXCEPTION USING ERRCODE = '{conflict}',
            MESSAGE = 'stream ' || p_stream || ' is at version ' || v_current,
            DETAIL = v_current::text;
    END IF;
"""
_RETURNS = """
RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer, out_written boolean,
               out_recorded_at timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_current bigint;
    v_last bigint;
    v_payload text;
BEGIN
    {lock}
"""
# Rows come back as (position, stream_id, version, written, recorded_at). written=false: some or
# all ids were stored already, and the caller decides between an idempotent retry and an error.
# (recorded_at came with version 2 of the functions, hence their `_v2` names: PostgreSQL cannot
# change the result type of a function a long-lived schema already has.)
_APPEND_ONE_DDL = (
    """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    p_stream text, p_expected text, p_id uuid, p_type text, p_schema_version int,
    p_data json, p_metadata json)"""
    + _RETURNS
    + _CHECK_STORED.replace("{ids}", "ARRAY[p_id]")
    + _CHECK_VERSION
    + """
    INSERT INTO {schema}.events AS e
        (event_id, stream_id, version, type, schema_version, data, metadata)
        VALUES (p_id, p_stream, v_current + 1, p_type, p_schema_version, p_data, p_metadata)
        RETURNING e.position, e.recorded_at INTO out_position, out_recorded_at;
    out_stream_id := p_stream;
    out_version := v_current + 1;
    out_written := true;
    PERFORM pg_notify({channel}, p_stream || ' ' || p_type || ' ' || out_position);
    PERFORM pg_notify({typed_one}, p_stream || ' ' || p_type || ' ' || out_position);
    RETURN NEXT;
END
$fn$
"""
)
_APPEND_MANY_DDL = (
    """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    p_stream text, p_expected text, p_ids text[], p_types text[], p_schema_versions int[],
    p_data text[], p_metadata text[])"""
    + _RETURNS
    + _CHECK_STORED.replace("{ids}", "p_ids::uuid[]")
    + _CHECK_VERSION
    + """
    RETURN QUERY
        INSERT INTO {schema}.events AS e
            (event_id, stream_id, version, type, schema_version, data, metadata)
        SELECT u.id::uuid, p_stream, v_current + u.n, u.t, u.sv, u.d::json, u.m::json
        FROM unnest(p_ids, p_types, p_schema_versions, p_data, p_metadata)
            WITH ORDINALITY AS u (id, t, sv, d, m, n)
        ORDER BY u.n
        RETURNING e.position, e.stream_id, e.version, true, e.recorded_at;
    -- The last row's position: the identity's last value in this session (no second scan).
    v_last := lastval();
    v_payload := left(p_stream || ' ' || array_to_string(
        ARRAY(SELECT DISTINCT t FROM unnest(p_types) AS t), ','), 7950) || ' ' || v_last;
    PERFORM pg_notify({channel}, v_payload);
    PERFORM pg_notify({typed_many}, v_payload) FROM (SELECT DISTINCT t FROM unnest(p_types) AS t) AS x;
END
$fn$
"""
)

# In RecordedEvent's argument order. JSON comes back as text, as the SQLite store's does:
# RecordedEvent decodes it on first access, so replays that skip metadata never parse it.
_COLUMNS = (
    "event_id::text, stream_id, version, position, type, schema_version, data::text, "
    "metadata::text, recorded_at"
)


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


def mask_url(url: str) -> str:
    """The URL with its password hidden, fit for messages and stats."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url)


def _unreachable(url: str, exc: BaseException) -> StoreUnavailableError:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return StoreUnavailableError(
        f"cannot reach the PostgreSQL event store at {mask_url(url)} ({reason}); start the "
        "server (or `labkit up`), or point LABKIT_PG_URL at a running one."
    )


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """The server went away (restart, killed backend, network), as opposed to a query error."""
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))


def _checked(pg: PGconn, res: PGresult, ok: ExecStatus) -> PGresult:
    """`res` if it has status `ok`, else the psycopg exception a cursor would raise."""
    if res.status == ok:
        return res
    if pg.status == ConnStatus.BAD:  # sqlstate None: `_connection_lost`, retried on a new one
        message = (pg.error_message or b"").decode(errors="replace").strip()
        raise psycopg.OperationalError(f"the connection to the server was lost: {message}")
    raise psycopg.errors.error_from_result(res, encoding="utf-8")


def _cells(res: PGresult) -> Callable[[int, int], bytes]:
    """`res.get_value`, for columns that are never NULL."""
    return cast(Callable[[int, int], bytes], res.get_value)


def _text_array(values: Sequence[str]) -> bytes:
    """A PostgreSQL array literal of text values (every element quoted and escaped)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(quoted) + "}").encode()


def _events(res: PGresult) -> list[RecordedEvent]:
    """Rows of `_COLUMNS` in text format -> recorded events."""
    get = _cells(res)
    out = []
    for r in range(res.ntuples):
        out.append(RecordedEvent(
            get(r, 0).decode(), get(r, 1).decode(), int(get(r, 2)), int(get(r, 3)),
            get(r, 4).decode(), int(get(r, 5)), get(r, 6).decode(), get(r, 7).decode(),
            datetime.fromisoformat(get(r, 8).decode())))
    return out


class _Connections:
    """A small pool: at most `size` autocommit connections in use, idle ones reused newest
    first, opened on demand in the calling thread.

    It does less than psycopg_pool (no background threads, no health checks) and costs a few
    microseconds per use instead of tens, which is measurable when an append is one round trip.
    A connection that broke is dropped with every idle one (they usually broke together, e.g. on
    a server restart); the next use opens a fresh one.
    """

    def __init__(self, url: str, size: int, setup: str = "SET TIME ZONE 'UTC'") -> None:
        self.url, self.size, self.setup = url, size, setup
        # A cursor per connection, reused: the cursor knows its connection.
        self._idle: list[psycopg.Cursor[Any]] = []
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    def connect(self) -> psycopg.Cursor[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            conn.execute(self.setup)  # e.g. the time zone: aware datetimes in UTC, as SQLite
        except psycopg.OperationalError as exc:
            raise _unreachable(self.url, exc) from None
        return conn.cursor()

    def run(self, op: Callable[[psycopg.Cursor[Any]], T]) -> T:
        if not self._slots.acquire(timeout=POOL_TIMEOUT_S):
            raise StoreUnavailableError(
                f"all {self.size} connections to {mask_url(self.url)} stayed busy for "
                f"{POOL_TIMEOUT_S:.0f} s; the database is overloaded or a query is stuck."
            )
        try:
            try:
                cur = self._idle.pop()
            except IndexError:
                cur = self.connect()
            try:
                return op(cur)
            finally:
                conn = cur.connection
                if conn.closed:
                    self.discard_idle()
                elif self._closed or conn.pgconn.transaction_status != TransactionStatus.IDLE:
                    conn.close()
                else:
                    self._idle.append(cur)
        finally:
            self._slots.release()

    def discard_idle(self) -> None:
        while self._idle:
            try:
                self._idle.pop().connection.close()
            except IndexError:  # another thread took the last one
                break

    def close(self) -> None:
        self._closed = True
        self.discard_idle()


class PostgresEventStore(EventStore):
    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str = "labkit",
        registry: UpcasterRegistry | None = None,
        pool_size: int = 8,
        synchronous_commit: str = "server",
        _serialise: bool = True,
    ) -> None:
        """Connect, create the schema, table and functions if needed, open a connection pool.

        `url` is a libpq URL or DSN; `pool_size` caps the connections this store holds (threads
        beyond it wait for one). `_serialise=False` is for tests only: it installs variants of
        the append functions without the advisory lock, to show that readers can then skip
        events. `synchronous_commit` ("on", "off"; "server": leave the server's setting) is set
        on this store's sessions: see "Durability" in the module docstring.
        """
        super().__init__(registry)
        if not schema or len(schema) > 40:
            raise ValueError("schema must be a non-empty name of at most 40 characters")
        self.url, self.schema = url, schema
        #: The NOTIFY channel of this log: every append notifies it when it commits.
        self.channel = notify_channel(schema)
        self._serialise = _serialise
        self._sql: dict[str, str] = {}
        self._pq_sql: dict[str, bytes] = {}
        self._init_schema()
        if synchronous_commit not in ("server", "on", "off"):
            raise ValueError("synchronous_commit must be 'server', 'on' or 'off'")
        self.synchronous_commit = synchronous_commit
        # enable_seqscan = off: every read of the log is an index range (`position > n`, a
        # stream's versions), but on a log that grew since it was last analyzed (a new lab, the
        # first minute of a class: autovacuum analyzes at most once a minute) the planner knows
        # neither how big the table is nor how few rows follow n, and picks a full scan; the
        # prepared statement then keeps that plan as the log grows (measured: a catch-up read
        # on a 15,000-event log took 1.8 ms instead of 0.05). The statistics queries (`stats`)
        # still scan where no index serves them.
        setup = "SET TIME ZONE 'UTC'; SET enable_seqscan = off"
        if synchronous_commit != "server":
            setup += f"; SET synchronous_commit = {synchronous_commit}"
        self._conns = _Connections(url, max(1, pool_size), setup)
        self._conns.run(lambda cur: None)  # one warm connection, and a clear error if refused

    # -- setup -------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        key = _signed32(zlib.crc32(self.schema.encode()))
        suffix = "" if self._serialise else "_unserialised"
        lock = f"PERFORM pg_advisory_xact_lock({_APPEND_LOCK_CLASS}, {key});"
        schema = sql.Identifier(self.schema)
        one = sql.Identifier("append_event_v2" + suffix)
        many = sql.Identifier("append_events_v2" + suffix)

        def ddl(template: str, function: sql.Identifier) -> sql.Composed:
            text = template.replace("{lock}", lock if self._serialise else "")
            text = text.replace("{conflict}", _SQLSTATE_CONFLICT)
            return sql.SQL(text).format(schema=schema, function=function,
                                        channel=sql.Literal(self.channel),
                                        typed_one=typed_channel_sql(self.schema, "p_type"),
                                        typed_many=typed_channel_sql(self.schema, "x.t"))

        table = sql.SQL("{}.events").format(schema)
        columns = sql.SQL(_COLUMNS)
        # The rarer statements, through psycopg cursors.
        queries = {
            "stream_version": sql.SQL(
                "SELECT COALESCE(MAX(version), 0) FROM {} WHERE stream_id = %s"
            ).format(table),
            "last_position": sql.SQL("SELECT COALESCE(MAX(position), 0) FROM {}").format(table),
            "count_between": sql.SQL(
                "SELECT COUNT(*) FROM {} WHERE position > %s AND position <= %s").format(table),
            "totals": sql.SQL(
                "SELECT COUNT(*), COUNT(DISTINCT stream_id), COALESCE(MAX(position), 0) FROM {}"
            ).format(table),
            "per_type": sql.SQL("SELECT type, COUNT(*) FROM {} GROUP BY type ORDER BY type").format(
                table
            ),
            "wipe": sql.SQL("TRUNCATE {}").format(table),
            "log_id": sql.SQL("SELECT value FROM {}.meta WHERE key = 'log_id'").format(schema),
            "new_log_id": sql.SQL("UPDATE {}.meta SET value = %s WHERE key = 'log_id'").format(
                schema),
        }
        # The hot statements, run at the libpq level (`_pq`): $n parameters, text format.
        after = sql.SQL("SELECT {} FROM {} WHERE position > $1").format(columns, table)
        reads = {
            "read_all": after + sql.SQL(" ORDER BY position LIMIT $2"),
            "read_all_prefix": after + sql.SQL(
                " AND starts_with(stream_id, $2) ORDER BY position LIMIT $3"),
            "read_all_types": after + sql.SQL(
                " AND type = ANY($2::text[]) ORDER BY position LIMIT $3"),
            "read_all_prefix_types": after + sql.SQL(
                " AND starts_with(stream_id, $2) AND type = ANY($3::text[]) "
                "ORDER BY position LIMIT $4"),
        }
        # Each read again with the head of the log in the same snapshot (one statement): one row
        # with NULL event columns when it finds no event.
        with_head = {f"{name}_head": sql.SQL(
            "SELECT e.*, h.head FROM (SELECT COALESCE(MAX(position), 0) AS head FROM {}) AS h "
            "LEFT JOIN LATERAL ({}) AS e ON true ORDER BY e.position").format(table, q)
            for name, q in reads.items()}
        pq_queries = {
            "append_one": sql.SQL(
                "SELECT * FROM {}.{}($1::text, $2::text, $3::uuid, $4::text, $5::int, "
                "$6::json, $7::json)").format(schema, one),
            "append_many": sql.SQL(
                "SELECT * FROM {}.{}($1::text, $2::text, $3::text[], $4::text[], $5::int[], "
                "$6::text[], $7::text[])").format(schema, many),
            "read_stream": sql.SQL(
                "SELECT {} FROM {} WHERE stream_id = $1 AND version >= $2 ORDER BY version"
            ).format(columns, table),
            **reads, **with_head,
            "last_position": queries["last_position"],
            "log_id": queries["log_id"],
        }
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                # One transaction, behind a lock: concurrent first starts cannot collide.
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_INIT_LOCK_CLASS, key))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                conn.execute(sql.SQL(_TABLE_DDL).format(schema=schema))
                conn.execute(sql.SQL(_META_DDL).format(schema=schema))
                conn.execute(sql.SQL("INSERT INTO {}.meta (key, value) VALUES ('log_id', %s) "
                                     "ON CONFLICT (key) DO NOTHING").format(schema),
                             (uuid.uuid4().hex,))
                conn.execute(ddl(_APPEND_ONE_DDL, one))
                conn.execute(ddl(_APPEND_MANY_DDL, many))
                self._sql = {name: q.as_string(conn) for name, q in queries.items()}
                self._pq_sql = {name: q.as_string(conn).encode()
                                for name, q in pq_queries.items()}
        except psycopg.OperationalError as exc:
            raise _unreachable(self.url, exc) from None

    # -- connections -------------------------------------------------------------------------

    def _run(self, op: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """Run `op` on a pooled connection; retry on a fresh one if the old one had died.

        Retrying an append is safe: its event ids make a repeat an idempotent no-op.
        """
        lost: BaseException | None = None
        for _ in range(3):
            try:
                return self._conns.run(op)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction,
                    psycopg.errors.InvalidSchemaName) as exc:
                raise self._gone(exc) from None
            except psycopg.OperationalError as exc:
                if not _connection_lost(exc):
                    raise
                lost = exc
        assert lost is not None
        raise _unreachable(self.url, lost) from None

    def _gone(self, exc: BaseException) -> StoreUnavailableError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return StoreUnavailableError(
            f"the event store's tables in PostgreSQL schema {self.schema!r} are gone ({first}): "
            "the schema was dropped while this process was running, and the log with it. "
            "Restart the lab (`labkit down`, then `labkit up`) to continue on a new, empty log."
        )

    def _query(self, name: str, params: Sequence[object] = (), extra: str = "") -> list[Any]:
        query = self._sql[name] + extra
        return self._run(lambda cur: cur.execute(query, params, prepare=True).fetchall())

    def _pq(self, name: str, params: Sequence[bytes] = ()) -> PGresult:
        """Run one of the hot statements as a prepared statement at the libpq level.

        Each append and catch-up read is one such call, several per saga step in every
        service: a psycopg cursor costs about 0.14 ms of CPU per call on the lab VM, this about
        0.07 ms (parameters and results in text format, converted here; libpq releases the GIL
        while it waits). Errors become the same psycopg exceptions a cursor raises."""
        text = self._pq_sql[name]
        key = b"labkit_" + name.encode()

        def op(cur: psycopg.Cursor[Any]) -> PGresult:
            conn = cur.connection
            pg = conn.pgconn
            prepared: set[bytes] | None = getattr(conn, "_labkit_prepared", None)
            if prepared is None:
                prepared = set()
                conn._labkit_prepared = prepared  # type: ignore[attr-defined]
            if key not in prepared:
                _checked(pg, pg.prepare(key, text), ExecStatus.COMMAND_OK)
                prepared.add(key)
            return _checked(pg, pg.exec_prepared(key, params), ExecStatus.TUPLES_OK)

        return self._run(op)

    # -- writing -----------------------------------------------------------------------------

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        stream, encoded, expected = prepare_append(stream_id, events, expected_version)
        if len(encoded) == 1:
            e = encoded[0]
            name = "append_one"
            params: list[bytes] = [
                stream.encode(), str(expected).encode(), e.id.encode(), e.type.encode(),
                str(e.schema_version).encode(), e.data_json.encode(), e.metadata_json.encode(),
            ]
        else:
            name = "append_many"
            params = [
                stream.encode(),
                str(expected).encode(),
                _text_array([e.id for e in encoded]),
                _text_array([e.type for e in encoded]),
                ("{" + ",".join(str(e.schema_version) for e in encoded) + "}").encode(),
                _text_array([e.data_json for e in encoded]),
                _text_array([e.metadata_json for e in encoded]),
            ]

        for _ in range(3):
            try:
                res = self._pq(name, params)
            except psycopg.errors.UniqueViolation:
                # Only without the lock (or against a foreign writer): a concurrent append got
                # there first. Running again decides: conflict, idempotent retry, or success.
                continue
            except psycopg.DatabaseError as exc:
                if exc.sqlstate == _SQLSTATE_CONFLICT:
                    actual = int(exc.diag.message_detail or 0)
                    raise ConcurrencyError(stream, expected, actual) from None
                raise
            get = _cells(res)
            # (position, stream id, version, written, recorded at), in text format
            rows = [(int(get(r, 0)), get(r, 1).decode(), int(get(r, 2)))
                    for r in range(res.ntuples)]
            if get(0, 3) != b"t":
                ids = [e.id for e in encoded]
                return _already_stored(stream, ids, rows)
            rows.sort(key=lambda r: r[2])
            return AppendResult(stream, tuple(r[0] for r in rows), rows[-1][2],
                                recorded_at=datetime.fromisoformat(
                                    get(res.ntuples - 1, 4).decode()))
        raise ConcurrencyError(stream, expected, self.stream_version(stream))

    # -- reading -----------------------------------------------------------------------------

    def _read_stream(self, stream_id: str, from_version: int) -> list[RecordedEvent]:
        return _events(self._pq("read_stream", [stream_id.encode(), str(from_version).encode()]))

    def _read_all(
        self, after_position: int, limit: int, stream_prefix: str | None, types: Sequence[str] | None
    ) -> list[RecordedEvent]:
        name, args = self._read_all_call(after_position, limit, stream_prefix, types)
        return _events(self._pq(name, args))

    @staticmethod
    def _read_all_call(after_position: int, limit: int, stream_prefix: str | None,
                       types: Sequence[str] | None) -> tuple[str, list[bytes]]:
        name = "read_all"
        args: list[bytes] = [str(after_position).encode()]
        if stream_prefix:
            name += "_prefix"
            args.append(stream_prefix.encode())
        if types:
            name += "_types"
            args.append(_text_array(list(types)))
        args.append(str(limit).encode())
        return name, args

    def read_all_and_head(
        self, after_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None,
        types: Sequence[str] | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        """One statement, so one snapshot: the events and the head it saw."""
        if limit < 1:
            raise EventValidationError("limit must be >= 1")
        name, args = self._read_all_call(after_position, limit, stream_prefix, types)
        res = self._pq(name + "_head", args)
        head = int(_cells(res)(0, 9))
        if res.get_value(0, 0) is None:  # the one row of an empty read
            return [], head
        return self.upcasters.upcast_all(_events(res)), head

    def stream_version(self, stream_id: str) -> int:
        return int(self._query("stream_version", (stream_id,))[0][0])

    def last_position(self) -> int:
        return int(_cells(self._pq("last_position"))(0, 0))

    def count_events(self, after_position: int = 0, upto_position: int | None = None) -> int:
        upto = self.last_position() if upto_position is None else upto_position
        return int(self._query("count_between", (after_position, upto))[0][0])

    def log_id(self) -> str:
        res = self._pq("log_id")
        return _cells(res)(0, 0).decode() if res.ntuples else ""

    def stats(self) -> dict[str, object]:
        total, streams, last = self._query("totals")[0]
        by_type = {t: int(n) for t, n in self._query("per_type")}
        return {"backend": self.backend, "location": f"{mask_url(self.url)} schema {self.schema}",
                "events": int(total), "streams": int(streams), "last_position": int(last),
                "by_type": by_type, "log_id": self.log_id()}

    def waiter(self, interest: Interest | None = None, *, types: Sequence[str] | None = None,
               idle_max: float | None = None, busy: float = 0.0, gather: float = 0.0,
               fallback: float = FALLBACK_POLL) -> NotifyWaiter:
        """LISTEN for this log's appends (see `ecommerce.store.postgres_notify`): all of them,
        or with `types` only those carrying one of these event types. `gather`: see
        `NotifyWaiter` (`idle_max` and `busy` are for polling stores)."""
        channels = [typed_channel(self.schema, t) for t in types] if types else self.channel
        return NotifyWaiter(self.url, channels, interest, fallback=fallback, gather=gather)

    # -- lifecycle ---------------------------------------------------------------------------

    def wipe(self) -> None:
        # Positions keep counting up afterwards, as in the SQLite store (AUTOINCREMENT), and the
        # log gets a new identity: read models built from the old one must be rebuilt.
        new_id = uuid.uuid4().hex

        def wipe(cur: psycopg.Cursor[Any]) -> None:
            with cur.connection.transaction():
                cur.execute(self._sql["wipe"])
                cur.execute(self._sql["new_log_id"], (new_id,))

        self._run(wipe)

    def close(self) -> None:
        self._conns.close()
