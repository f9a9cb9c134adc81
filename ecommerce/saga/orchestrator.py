"""The saga orchestrator: reads a saga's stream, records its next decision, then acts on it.

Durable by construction
-----------------------
The orchestrator keeps no state of its own. Each saga's state is its stream `saga-<id>`, and
every decision (start step 3, retry it, it failed, compensate step 2, ...) is appended there
*before* the orchestrator calls a participant. Kill the process at any instant and start it
again: it reads the streams, finds every saga without a terminal event, and continues each
from its last recorded decision. A call that was in flight is simply sent again with the same
`Idempotency-Key`, and the participant answers it with its first reply, so nothing is charged
or reserved twice.

That is why a Kubernetes Job running `python -m ecommerce.saga run --pending` with a
`backoffLimit` gives durable sagas for free: if the pod dies mid-saga, the Job controller starts
another pod, which resumes every unfinished saga exactly where the dead one stopped. The
Deployment variant (`run --follow`) is the same loop kept running, discovering new sagas by
following the global log.

Two orchestrators at once
-------------------------
Appends use the stream's expected version, so of two orchestrators deciding the same thing
only one write wins; the other gets a ConcurrencyError, re-reads and continues. The step in
progress also carries its driver's lease (`lease_until`, renewed with every recorded attempt):
another orchestrator takes it over only after the lease has run out, so a live driver is never
doubled, and a dead one is replaced within a few seconds.

Errors that are not a participant's answer
------------------------------------------
A participant's refusal or a timeout is part of the saga (recorded, retried, compensated). Any
other exception while driving a saga (a bug, an event the decider cannot read) is retried with
a growing backoff, at most `max_attempts` times; then the orchestrator records `SagaStuck` with
the error in the saga's stream and leaves it alone. Every orchestrator, now or after a restart,
skips a stuck saga until an operator records `SagaResumed` (`labkit saga retry ID`). An event
store that cannot be reached is different: nothing can be recorded then, so those attempts are
retried (backoff capped at `MAX_ERROR_BACKOFF`) until the store is back, and do not count.

Fault injection (for the crash scenarios)
-----------------------------------------
`LABKIT_SAGA_CRASH_AFTER="<step>:<EventType>"` (e.g. `charge_payment:StepSucceeded`, or
`4:StepSucceeded`), or `faults={"crash_after": ...}` in a saga's SagaStarted, makes the process
SIGKILL itself right after it first records that event: a real crash at a chosen point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ecommerce import logs
from ecommerce.domain import orders as o
from ecommerce.domain import saga as s
from ecommerce.domain.events import NewEvent, iso_utc
from ecommerce.health import Heartbeat
from ecommerce.store.base import ConcurrencyError, EventStore, StoreUnavailableError
from ecommerce.store.wakeup import Waiter

log = logging.getLogger("saga-orchestrator")

CRASH_ENV = "LABKIT_SAGA_CRASH_AFTER"
#: Attempts at driving a saga through unexpected errors before it is recorded as stuck.
MAX_ATTEMPTS = 5
#: Seconds before the first retry after an unexpected error (doubling, up to the cap).
ERROR_BACKOFF = 1.0
MAX_ERROR_BACKOFF = 30.0
#: Seconds between polls while sagas keep starting, without database wake-ups (SQLite): the
#: interval the follower always polled at, so under load it costs and lags as before.
BUSY_POLL = 0.005
#: Saga events that make a follower (re)start driving a saga.
WAKE_EVENTS = (s.SAGA_STARTED, s.SAGA_RESUMED)


def _wakes_orchestrator(stream_id: str, types: Sequence[str]) -> bool:
    """An append a follower must look at: a saga started or resumed."""
    return stream_id.startswith(s.STREAM_PREFIX) and any(t in WAKE_EVENTS for t in types)


class Participants(Protocol):
    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome: ...


class SimulatedCrash(BaseException):
    """Raised instead of killing the process when a test passes `on_crash=raise_crash`."""


def raise_crash(saga_id: str, spec: str) -> None:
    raise SimulatedCrash(f"crash point {spec} reached in saga {saga_id}")


def kill_self(saga_id: str, spec: str) -> None:
    """The real crash: SIGKILL this process (no cleanup, no flush, like `kill -9`)."""
    logs.event(log, "crash point reached: killing this process", saga=saga_id, point=spec,
               pid=os.getpid())
    with contextlib.suppress(Exception):
        for h in logging.getLogger().handlers:
            h.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def new_saga_id() -> str:
    return uuid.uuid4().hex[:12]


def start_saga(store: EventStore, user_id: str, lines: Sequence[Any], *,
               order_id: str | None = None, saga_id: str | None = None,
               prices: Mapping[str, int] | None = None,
               faults: Mapping[str, Any] | None = None) -> str:
    """Append a saga's SagaStarted (the orchestrator does the rest); return the saga id.

    `lines`: `[{"sku", "quantity"}]` or `[(sku, quantity)]`; prices come from `prices`
    (integer cents; default: the catalogue's), and a line with another price is refused.
    The order id defaults to `ord-<saga id>`.
    """
    sid = saga_id or new_saga_id()
    oid = order_id or f"ord-{sid}"
    for what, value in (("saga id", sid), ("order id", oid)):
        if not re.match(o.ID_PATTERN, value):  # the participants' URLs would refuse it later
            raise s.SagaRuleError("bad_id", f"{what} {value[:120]!r} is refused: 1 to 100 "
                                            "letters, digits, '_', '.', ':' or '-'")
    if prices is None:
        from ecommerce.domain.stock import CATALOGUE

        prices = {sku: item.price for sku, item in CATALOGUE.items()}
    clean = s.normalise_lines(lines, prices)
    started = s.saga_started(sid, oid, user_id, clean, faults)
    try:
        store.append(s.stream_id(sid), [NewEvent(started.type, started.data,
                                                 {"saga_id": sid})], "none")
    except ConcurrencyError:
        raise s.SagaRuleError("already_exists", f"saga {sid} already exists") from None
    return sid


def pending_saga_ids(store: EventStore, batch: int = 5000) -> list[str]:
    """Every saga without a terminal event that is not stuck, oldest first."""
    started: dict[str, None] = {}
    ended: set[str] = set()
    stuck: set[str] = set()
    after = 0
    types = [s.SAGA_STARTED, *s.TERMINAL_EVENTS, *s.STUCK_EVENTS]
    while True:
        events = store.read_all(after, batch, stream_prefix=s.STREAM_PREFIX, types=types)
        for e in events:
            sid = s.saga_id_of(e.stream_id)
            if e.type == s.SAGA_STARTED:
                started[sid] = None
            elif e.type == s.SAGA_STUCK:
                stuck.add(sid)
            elif e.type == s.SAGA_RESUMED:
                stuck.discard(sid)
            else:
                ended.add(sid)
        if len(events) < batch:
            break
        after = events[-1].position
    return [sid for sid in started if sid not in ended and sid not in stuck]


def resume_saga(store: EventStore, saga_id: str, by: str = "operator") -> s.SagaState:
    """Record `SagaResumed` for a stuck saga (the orchestrators then drive it again)."""
    state = s.fold(saga_id, store.read_stream(s.stream_id(saga_id)))
    if state.status == "new":
        raise s.SagaRuleError("not_found", f"no saga {saga_id!r}")
    e = s.saga_resumed(state, by)
    store.append(s.stream_id(saga_id), [NewEvent(e.type, e.data, {"saga_id": saga_id})],
                 state.version)
    return s.apply(state, e.type, e.data, state.version + 1, iso_utc())


def find_saga(store: EventStore, ident: str) -> str | None:
    """The saga whose id or order id is `ident`."""
    if store.stream_version(s.stream_id(ident)) > 0:
        return ident
    after = 0
    while True:
        events = store.read_all(after, 5000, stream_prefix=s.STREAM_PREFIX,
                                types=[s.SAGA_STARTED])
        for e in events:
            if e.data.get("order_id") == ident:
                return s.saga_id_of(e.stream_id)
        if len(events) < 5000:
            return None
        after = events[-1].position


class Orchestrator:
    """Drives order sagas to a terminal state: in-process, as a Job, or following the log."""

    def __init__(
        self,
        store: EventStore,
        participants: Participants,
        *,
        policy: s.RetryPolicy | None = None,
        owner: str | None = None,
        workers: int = 16,
        crash_after: str | None = None,
        on_crash: Callable[[str, str], None] = kill_self,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        error_backoff: float = ERROR_BACKOFF,
    ) -> None:
        self.store = store
        self.participants = participants
        self.policy = policy or s.RetryPolicy()
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.workers = workers
        self.crash_after = crash_after if crash_after is not None else os.environ.get(CRASH_ENV, "")
        self.on_crash = on_crash
        self.clock = clock
        self._rng = random.Random(seed)
        self.max_attempts = max(1, max_attempts)
        self.error_backoff = error_backoff
        self._claims: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # ---- one saga -------------------------------------------------------------------------
    def read(self, saga_id: str) -> s.SagaState:
        return s.fold(saga_id, self.store.read_stream(s.stream_id(saga_id)))

    def run(self, saga_id: str, stop: threading.Event | None = None) -> s.SagaState:
        """Drive one saga until it is terminal (or `stop` is set); return its state."""
        while True:
            claim = self._claim(saga_id)
            if claim is not None:
                try:
                    return self._drive_bounded(saga_id, stop)
                finally:
                    self._release(saga_id)
            # Another thread of this process drives it: wait for that thread, then look again.
            with self._lock:
                other = self._claims.get(saga_id)
            if other is not None:
                other.wait(0.5)
            state = self.read(saga_id)
            if state.terminal or state.status in ("new", "stuck") or (
                    stop is not None and stop.is_set()):
                return state

    def _drive(self, saga_id: str, stop: threading.Event | None,
               known: Sequence[Any] = ()) -> s.SagaState:
        """`known`: the stream's first events, when the caller has just read them (a follower
        that found the SagaStarted): the saga is folded from them instead of read again. Should
        the stream hold more, the first append conflicts and the stream is read then."""
        policy, owner = self.policy, self.owner
        state = s.fold(saga_id, known) if known else self.read(saga_id)
        planned: s.Invoke | None = None
        while True:
            if stop is not None and stop.is_set():
                return state
            now = self.clock()
            act = planned or s.next_action(state, now, owner, policy)
            planned = None
            if isinstance(act, s.Done | s.NotStarted | s.Stuck):
                return state
            if isinstance(act, s.Wait):
                logs.event(log, "waiting for another orchestrator's lease", saga=saga_id,
                           owner=act.owner, seconds=round(act.until - now, 2))
                self._sleep(min(max(act.until - now, 0.01) + 0.01, 1.0), stop)
                state = self.read(saga_id)
                continue
            if isinstance(act, s.Finish):
                recorded = self._record(state, act.record)
                state = recorded if recorded is not None else self.read(saga_id)
                continue
            # Invoke: record the decision first (unless already recorded), then act on it.
            if act.record:
                recorded = self._record(state, act.record)
                if recorded is None:
                    state = self.read(saga_id)
                    continue
                state = recorded
            outcome = self.participants.call(act.action, act.kind, state)
            now = self.clock()
            events = s.on_outcome(state, act, outcome, now, owner, policy,
                                  jitter=self._rng.random() * 0.5)
            delay = s.retry_delay(events)
            batch = list(events)
            folded: tuple[int, s.SagaState] | None = None
            if not delay:
                # Record the next decision in the same append: one write per step, not two.
                after = self._apply_local(state, events)
                folded = (len(batch), after)
                nxt = s.next_action(after, now, owner, policy)
                if isinstance(nxt, s.Invoke | s.Finish) and nxt.record:
                    batch += nxt.record
                    if isinstance(nxt, s.Invoke):
                        planned = s.Invoke(nxt.step, nxt.kind, nxt.attempt)
            recorded = self._record(state, batch, folded)
            if recorded is None or recorded.version != state.version + len(batch):
                planned = None  # a conflict (or a crash hook that returned): decide afresh
                state = self.read(saga_id) if recorded is None else recorded
                continue
            state = recorded
            if delay:
                self._sleep(delay, stop)

    def _apply_local(self, state: s.SagaState, events: Iterable[s.NewSagaEvent]) -> s.SagaState:
        at = iso_utc()
        for e in events:
            state = s.apply(state, e.type, e.data, state.version + 1, at)
        return state

    def _record(self, state: s.SagaState, events: Sequence[s.NewSagaEvent],
                folded: tuple[int, s.SagaState] | None = None) -> s.SagaState | None:
        """Append the events at the state's version; the new state, or None on a conflict.
        `folded`: (n, the state with the first n events applied already), to apply only the
        rest."""
        sid = state.saga_id
        meta = {"saga_id": sid, "owner": self.owner}
        spec = state.faults.get("crash_after") or self.crash_after
        cut = s.crash_point(spec, events, state) if spec else None
        if cut is not None:
            events = events[:cut + 1]  # die right after that event, not after the whole batch
        try:
            self.store.append(s.stream_id(sid), [NewEvent(e.type, e.data, meta) for e in events],
                              state.version)
        except ConcurrencyError:
            logs.event(log, "another orchestrator advanced this saga; re-reading", saga=sid)
            return None
        if folded is not None and folded[0] <= len(events):
            after = self._apply_local(folded[1], events[folded[0]:])
        else:
            after = self._apply_local(state, events)
        self._log(sid, events, after)
        if cut is not None:
            self.on_crash(sid, spec)
        return after

    def _log(self, saga_id: str, events: Sequence[s.NewSagaEvent], after: s.SagaState) -> None:
        for e in events:
            d = e.data
            if e.type in (s.STEP_SUCCEEDED, s.STEP_STARTED, s.COMPENSATION_STARTED) and \
                    not d.get("takeover"):
                continue  # routine: the stream has it; keep the log about what matters
            fields: dict[str, Any] = {"saga": saga_id, "event": e.type}
            for k in ("step", "attempt", "attempts", "reason", "error", "retry_in", "kind"):
                if k in d:
                    fields[k] = d[k]
            if e.type in s.TERMINAL_EVENTS:
                fields["order"] = after.order_id
            logs.event(log, e.type, **fields)

    def _sleep(self, seconds: float, stop: threading.Event | None) -> None:
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    # ---- claims: one thread per saga in this process ----------------------------------------
    def _claim(self, saga_id: str) -> threading.Event | None:
        with self._lock:
            if saga_id in self._claims:
                return None
            ev = self._claims[saga_id] = threading.Event()
            return ev

    def _release(self, saga_id: str) -> None:
        with self._lock:
            ev = self._claims.pop(saga_id, None)
        if ev is not None:
            ev.set()

    def active(self) -> list[str]:
        with self._lock:
            return list(self._claims)

    # ---- many sagas -----------------------------------------------------------------------
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="saga")
        return self._pool

    def submit(self, saga_id: str, stop: threading.Event | None = None,
               known: Sequence[Any] = ()) -> bool:
        """Drive a saga on the worker pool, unless this process already drives it. `known`:
        its stream's first events, if the caller has them (see `_drive`)."""
        if self._claim(saga_id) is None:
            return False
        self.pool().submit(self._drive_claimed, saga_id, stop, known)
        return True

    def _drive_claimed(self, saga_id: str, stop: threading.Event | None,
                       known: Sequence[Any] = ()) -> None:
        try:
            self._drive_bounded(saga_id, stop, known)
        except Exception as exc:  # only when stopped while the store is away: nothing to do
            logs.event(log, "stopped driving saga", saga=saga_id, error=str(exc)[:300])
        finally:
            self._release(saga_id)

    def _drive_bounded(self, saga_id: str, stop: threading.Event | None,
                       known: Sequence[Any] = ()) -> s.SagaState:
        """`_drive`, retrying unexpected errors with backoff; after `max_attempts` of them the
        saga is recorded as stuck (see the module docstring). The caller holds the claim.
        `known` serves the first attempt only; a retry reads the stream."""
        attempts = unreachable = 0
        error = ""
        while True:
            try:
                if attempts >= self.max_attempts:
                    stuck = self._mark_stuck(saga_id, error, attempts)
                    if stuck is not None:
                        return stuck
                    attempts = 0  # another orchestrator moved it: it is not stuck after all
                first, known = known, ()
                return self._drive(saga_id, stop, first)
            except StoreUnavailableError as exc:  # nothing can be recorded: wait for the store
                unreachable += 1
                delay = min(self.error_backoff * 2 ** (unreachable - 1), MAX_ERROR_BACKOFF)
                logs.event(log, "event store unreachable; retrying", saga=saga_id,
                           retry_in=delay, error=str(exc)[:300])
            except Exception as exc:  # a bug or a bad event: bounded
                if attempts >= self.max_attempts:  # recording it as stuck failed too
                    log.exception("saga %s: cannot record it as stuck; retrying in %.0fs",
                                  saga_id, MAX_ERROR_BACKOFF)
                    self._sleep(MAX_ERROR_BACKOFF, stop)
                    continue
                attempts += 1
                error = f"{type(exc).__name__}: {exc}"
                if attempts >= self.max_attempts:
                    log.exception("saga %s: %s; giving up after %d attempts", saga_id, error,
                                  attempts)
                    continue  # record it as stuck
                delay = min(self.error_backoff * 2 ** (attempts - 1), MAX_ERROR_BACKOFF)
                log.exception("saga %s: %s; attempt %d of %d, retrying in %.1fs", saga_id, error,
                              attempts, self.max_attempts, delay)
            if stop is not None and stop.is_set():
                return self.read(saga_id)
            self._sleep(delay, stop)

    def _mark_stuck(self, saga_id: str, error: str, attempts: int) -> s.SagaState | None:
        """Record SagaStuck; the new state, or None if the saga moved meanwhile.

        Works when the stream cannot even be folded (the error may come from folding it): the
        event is then appended at the stream's version, and the state returned is only that."""
        events = self.store.read_stream(s.stream_id(saga_id))
        try:
            state = s.fold(saga_id, events)
        except Exception:
            state = s.SagaState(saga_id, status="running", version=len(events) and events[-1].version)
        if state.terminal or state.status in ("new", "stuck"):
            return state
        event = s.saga_stuck(state, error, attempts, self.owner)
        try:
            self.store.append(s.stream_id(saga_id), [NewEvent(
                event.type, event.data, {"saga_id": saga_id, "owner": self.owner})], state.version)
        except ConcurrencyError:
            return None
        after = self._apply_local(state, [event])
        self._log(saga_id, [event], after)
        return after

    def run_pending(self, stop: threading.Event | None = None) -> list[s.SagaState]:
        """Drive every saga that is not terminal yet, concurrently, then return their states."""
        ids = pending_saga_ids(self.store)
        if not ids:
            return []
        logs.event(log, "resuming unfinished sagas", count=len(ids))
        return list(self.pool().map(lambda sid: self.run(sid, stop), ids))

    def follow(self, stop: threading.Event, poll: float | None = None, batch: int = 500, *,
               busy: float = BUSY_POLL, waiter: Waiter | None = None,
               heartbeat: Heartbeat | None = None) -> None:
        """Resume unfinished sagas, then drive each new saga as it appears in the log.

        Between polls it waits the store's way (`EventStore.waiter`): PostgreSQL wakes it when
        a SagaStarted or SagaResumed commits; otherwise it polls every `busy` s while sagas
        keep starting and backs off at rest, up to `poll` s (default 250 ms). Each turn beats
        `heartbeat` (the liveness/readiness probes).
        """
        waiter = waiter or self.store.waiter(_wakes_orchestrator, types=WAKE_EVENTS,
                                             idle_max=poll, busy=busy)
        try:
            cursor = self.store.last_position()
            for sid in pending_saga_ids(self.store):
                self.submit(sid, stop)
            while not stop.is_set():
                try:
                    # With the head the read saw: the cursor can jump past the other events.
                    found, head = self.store.read_all_and_head(
                        cursor, batch, stream_prefix=s.STREAM_PREFIX, types=list(WAKE_EVENTS))
                except Exception as exc:  # the database is away: keep trying, do not die
                    logs.event(log, "cannot read the log; retrying in 1s", error=str(exc)[:300])
                    if heartbeat is not None:
                        heartbeat.beat(False, f"cannot read the event log: {str(exc)[:300]}")
                    stop.wait(1.0)
                    continue
                if heartbeat is not None:
                    heartbeat.beat()
                for e in found:  # a new saga's SagaStarted is all its stream holds, usually
                    first = (e,) if e.type == s.SAGA_STARTED and e.version == 1 else ()
                    self.submit(s.saga_id_of(e.stream_id), stop, first)
                if len(found) == batch:
                    cursor = found[-1].position
                    continue
                # Positions are committed in order (both stores), so nothing below `head` can
                # still appear: jump there instead of rescanning the other services' events.
                cursor = max(cursor, head, found[-1].position if found else cursor)
                waiter.wait(stop, len(found), cursor)
        finally:
            waiter.close()

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None
