"""`lab.saga`: place orders as sagas, wait for them, and read them back.

    sid = lab.saga.place_order("u-1", [("MOUSE-WL", 1)])   # appends SagaStarted
    lab.saga.wait(sid)                                      # the saga's view once it ended
    lab.saga.timeline([sid])                                # DataFrame for the Gantt chart
    lab.saga.latest(5)                                      # the same, for the 5 newest sagas

`place_order` only records that the saga started; the orchestrator (the `saga-orchestrator`
process, or a Job running `run --pending`) drives it. `status`, `wait`, `list` and `timeline`
read the saga streams in the event store, so they are exact, not eventually consistent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ecommerce.domain import saga as s
from ecommerce.domain.saga_view import TIMELINE_COLUMNS, describe, summary, timeline_rows
from ecommerce.saga.orchestrator import resume_saga, start_saga
from ecommerce.store.base import EventStore
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.lab.counts import check_count

if TYPE_CHECKING:
    import pandas as pd

_stores: dict[str, EventStore] = {}
_stores_lock = threading.Lock()
#: Catalogue prices per lab (a `lab.saga` is made per use; prices need not be fetched each time).
_prices: dict[int, tuple[float, dict[str, int]]] = {}
PRICES_TTL = 60.0


class SagaTimeout(TimeoutError):
    """A saga did not end in time; `view` is where it was."""

    def __init__(self, saga_id: str, view: dict[str, Any], timeout: float) -> None:
        self.saga_id, self.view = saga_id, view
        running = [view[k] for k in view.get("actions", []) + view.get("compensations", [])
                   if isinstance(view.get(k), dict) and view[k]["status"] == "running"]
        super().__init__(f"saga {saga_id} is still {view.get('status')} after {timeout}s"
                         + (_in_progress(running) if running else
                            ". Is the saga-orchestrator running? (lab.status(), "
                            "lab.logs('saga-orchestrator'))"))


def _in_progress(steps: list[dict[str, Any]]) -> str:
    """Where a saga that runs waits: each step, its service, its attempts and last error, and
    which service to look at (a step that is retried waits for its service, not the
    orchestrator)."""
    parts = [f"{p['step']} at {p['service']}, attempt {p['attempts']}"
             + (f", last error: {p['error']}" if p.get("error") else "") for p in steps]
    services = ", ".join(dict.fromkeys(p["service"] for p in steps))
    return (f" (in progress: {'; '.join(parts)}). Is {services} answering? (lab.status(), "
            f"lab.logs(...)); the saga-orchestrator retries until the step's deadline")


class SagaStuckError(RuntimeError):
    """The orchestrator gave up on this saga (`view["stuck_error"]`); an operator must retry it."""

    def __init__(self, saga_id: str, view: dict[str, Any]) -> None:
        self.saga_id, self.view = saga_id, view
        super().__init__(
            f"saga {saga_id} is stuck: the orchestrator gave up on it after repeated errors "
            f"({view.get('stuck_error')}). Fix the cause (lab.logs('saga-orchestrator')), then "
            f"retry it: `labkit saga retry {saga_id}` or lab.saga.retry({saga_id!r})."
        )


def _lab_store(lab: Any) -> EventStore:
    """One shared event store per lab database (opening one per call would leak connections).

    Local mode: the lab's own database (SQLite file, or LABKIT_PG_URL). Cluster mode: the
    cluster's PostgreSQL, through LABKIT_PG_URL (e.g. a port-forward) or, when the runtime
    offers one, `lab.runtime.pg_url()`.
    """

    from ecommerce.store.factory import open_event_store

    st = lab.settings
    if getattr(lab, "mode", "local") == "cluster" and not st.pg_url:
        # No database access from the notebook: read the log through event-store-api.
        from ecommerce.store.http_events import HttpEventStore

        url = lab.url("event-store-api")
        with _stores_lock:
            store = _stores.get(url)
            if store is None:
                store = _stores[url] = HttpEventStore(url)
            return store
    key = f"{st.pg_url}#{st.pg_schema}" if st.pg_url else str(st.events_db)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_event_store(st)
        return store


class SagaClient:
    """The saga part of the notebook API. Give it a `Lab`, or an event store directly."""

    def __init__(self, lab_or_store: Any, *, prices: Mapping[str, int] | None = None) -> None:
        if isinstance(lab_or_store, EventStore):
            self.lab, self.store = None, lab_or_store
        else:
            self.lab, self.store = lab_or_store, _lab_store(lab_or_store)
        self._prices = dict(prices) if prices is not None else None

    # ---- writing ---------------------------------------------------------------------------
    def prices(self) -> dict[str, int]:
        """Unit prices in cents: from inventory-service when a lab is running, else the catalogue."""
        if self._prices is None:
            key = id(self.store)
            cached = _prices.get(key)
            if cached is None or time.monotonic() - cached[0] > PRICES_TTL:
                cached = _prices[key] = (time.monotonic(), _catalogue_prices(self.lab))
            self._prices = cached[1]
        return self._prices

    def place_order(self, user: str, lines: Sequence[Any], *, order_id: str | None = None,
                    saga_id: str | None = None, crash_after: str | None = None) -> str:
        """Start an order saga; return its id. The orchestrator runs it.

        `lines`: `[("SKU", quantity), ...]` or `[{"sku", "quantity"}]`; the prices are the
        catalogue's (integer cents; a line naming another price is refused).
        `crash_after="<step>:<Event>"` makes the orchestrator kill itself right after recording
        that event (the crash scenario).
        """
        if self.store.backend == "http":  # cluster mode: the write side starts the saga
            if self.lab is None:
                raise TypeError("over an HTTP event store, sagas start through command-service: "
                                "give SagaClient the Lab (lab.saga), not the store")
            clean = s.normalise_lines(lines, self.prices())
            body: dict[str, Any] = {"user_id": user, "lines": [
                {"sku": ln["sku"], "quantity": ln["quantity"]} for ln in clean]}
            for k, v in (("order_id", order_id), ("saga_id", saga_id), ("crash_after", crash_after)):
                if v:
                    body[k] = v
            return str(self.lab.command("place-order", **body)["saga_id"])
        faults = {"crash_after": crash_after} if crash_after else None
        return start_saga(self.store, user, lines, order_id=order_id, saga_id=saga_id,
                          prices=self.prices(), faults=faults)

    # ---- reading ---------------------------------------------------------------------------
    def state(self, saga_id: str) -> s.SagaState:
        return s.fold(saga_id, self.store.read_stream(s.stream_id(saga_id)))

    def status(self, saga_id: str) -> dict[str, Any]:
        """The saga's view: status, failure, and every action and compensation with timings."""
        state = self.state(saga_id)
        if state.status == "new":
            raise _no_saga(saga_id)
        return describe(state)

    def require(self, saga_id: str) -> None:
        """Raise KeyError (the sentence `status` gives) unless saga `saga_id` has started."""
        if self.store.stream_version(s.stream_id(saga_id)) == 0:
            raise _no_saga(saga_id)

    def wait(self, saga_id: str, timeout: float = 30.0, poll: float = 0.005) -> dict[str, Any]:
        """Block until the saga is terminal; return its view. Raises SagaTimeout (still running
        after `timeout` seconds), SagaStuckError (the orchestrator gave up on it) or KeyError
        (no such saga)."""
        stream = s.stream_id(saga_id)
        seen = -1

        def ended() -> dict[str, Any] | None:
            nonlocal seen
            version = self.store.stream_version(stream)
            if version == 0:
                raise _no_saga(saga_id)
            if version == seen:
                return None  # nothing new on the stream: no need to fold it again
            seen = version
            state = self.state(saga_id)
            if state.status == "stuck":
                raise SagaStuckError(saga_id, describe(state))
            return describe(state) if state.terminal else None

        try:
            view = wait_until(ended, timeout=timeout, interval=poll, max_interval=0.05,
                              what=f"saga {saga_id} to end")
        except WaitTimeout:
            raise SagaTimeout(saga_id, describe(self.state(saga_id)), timeout) from None
        assert view is not None  # wait_until returns only a value that holds
        return view

    def wait_all(self, saga_ids: Iterable[str], timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.wait(sid, max(0.0, deadline - time.monotonic())) for sid in saga_ids]

    def summaries(self, limit: int | None = 100, status: str | None = None) -> list[dict[str, Any]]:
        """Sagas, newest first: id, order, user, status, amount, failure, timings (`limit`:
        how many at most, None for all)."""
        check_count("limit", limit, "sagas", allow_none=True)
        states: dict[str, s.SagaState] = {}
        after = 0
        types = [s.SAGA_STARTED, s.STEP_FAILED, *s.TERMINAL_EVENTS, *s.STUCK_EVENTS]
        while True:
            events = self.store.read_all(after, 5000, stream_prefix=s.STREAM_PREFIX, types=types)
            for e in events:
                sid = s.saga_id_of(e.stream_id)
                st = states.get(sid) or s.SagaState(sid)
                states[sid] = s.apply(st, e.type, e.data, e.version, e.recorded_iso)
            if len(events) < 5000:
                break
            after = events[-1].position
        rows = [summary(describe(st)) for st in reversed(states.values()) if st.status != "new"]
        if status:
            rows = [r for r in rows if r["status"] == status]
        return rows if limit is None else rows[:limit]

    def retry(self, saga_id: str) -> dict[str, Any]:
        """Ask the orchestrators to drive a stuck saga again (records `SagaResumed`); returns
        its view. Only a stuck saga can be retried."""
        if self.store.backend == "http":
            raise s.SagaRuleError(
                "read_only", "retrying a saga writes to its stream, which needs the event store "
                "itself: in cluster mode, port-forward PostgreSQL and set LABKIT_PG_URL")
        return describe(resume_saga(self.store, saga_id))

    def timeline(self, ids: str | Iterable[str] | None = None) -> pd.DataFrame:
        """One row per attempt of every action and compensation of these sagas (default: the
        last 10): saga, step, kind (action|compensation), start, end, outcome, attempt."""
        import pandas as pd

        from labkit.lab.scenarios import scenario_of

        if ids is None:
            ids = [r["saga_id"] for r in self.summaries(limit=10)][::-1]
        elif isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        for sid in ids:  # an unknown id fails as status() does, before anything is drawn
            self.require(sid)
        rows: list[dict[str, Any]] = []
        for sid in ids:
            events = self.store.read_stream(s.stream_id(sid))
            state = s.fold(sid, events)
            label = f"{scenario_of(state)} · {state.user_id}"
            rows += [{**r, "label": label} for r in timeline_rows(sid, events)]
        df = pd.DataFrame(rows, columns=[*TIMELINE_COLUMNS, "label"])
        for col in ("start", "end"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        return df

    def latest(self, n: int = 5) -> pd.DataFrame:
        """The timeline of the `n` most recently started sagas (oldest of them first): what a
        chart of "what just happened" needs, whatever placed them."""
        check_count("n", n, "sagas")
        return self.timeline([r["saga_id"] for r in self.summaries(limit=n)][::-1])

    # ---- driving in this process (no orchestrator process needed) --------------------------
    def run(self, saga_id: str, participants: Any = None) -> dict[str, Any]:
        """Drive the saga to its end in this process (what the orchestrator process does)."""
        from ecommerce.saga.orchestrator import Orchestrator
        from ecommerce.saga.participants import HttpParticipants

        if participants is None:
            if self.lab is None:
                raise ValueError("give participants (or use a SagaClient made from a Lab)")
            from ecommerce.services.registry import PARTICIPANTS

            participants = HttpParticipants({p: self.lab.url(p) for p in PARTICIPANTS})
        orch = Orchestrator(self.store, participants)
        try:
            return describe(orch.run(saga_id))
        finally:
            orch.close()
            close = getattr(participants, "close", None)
            if close is not None:
                close()


def _no_saga(saga_id: str) -> KeyError:
    return KeyError(f"no saga {saga_id!r} (stream {s.stream_id(saga_id)} is empty)")


def _catalogue_prices(lab: Any) -> dict[str, int]:
    if lab is not None:
        try:
            items = lab.http("inventory-service").get("/api/inventory").json()["items"]
            return {it["sku"]: it["price"] for it in items}
        except Exception:
            pass
    from ecommerce.domain.stock import CATALOGUE

    return {sku: item.price for sku, item in CATALOGUE.items()}
