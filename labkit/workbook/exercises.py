"""The checks of the notebooks' exercises (연습 문제): each probes the running lab.

Every check prints one line and returns a `Verdict`: ✅ (right), ❌ with what was observed and
what was expected, or ⏳ "not done yet" while the exercise still holds its stub. A check never
raises, so the cells after it still run. The student's code reaches the running system through
plugins (`lab.deploy_code`, `ecommerce.plugins`) or is called by the check on real data.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ecommerce import plugins
from ecommerce.domain import orders as o
from ecommerce.domain import saga as sg
from labkit.workbook.checks import PLENTY_SKU, compensation_order, saga_log

NOT_DONE = "아직 풀지 않았습니다 (not done yet)"


@dataclass(frozen=True)
class Verdict:
    #: True: right; False: wrong; None: not done yet (the stub is still there).
    ok: bool | None
    message: str

    def __str__(self) -> str:
        mark = {True: "✅", False: "❌", None: "⏳"}[self.ok]
        prefix = f"{NOT_DONE}: " if self.ok is None else ""
        return f"{mark} {prefix}{self.message}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def exercise(fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """Print the verdict; turn any error into a ❌ that names it (never raise)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Verdict:
        try:
            verdict = fn(*args, **kwargs)
        except Exception as exc:  # the student's code, or the lab, failed: say so, go on
            verdict = Verdict(False, f"the check stopped on {type(exc).__name__}: {exc}")
        print(verdict)
        return verdict

    return run


# ---- 02 Saga --------------------------------------------------------------------------------

NOTIFY_STEP = "notify_customer"


def _added_step(name: str) -> sg.StepDef | None:
    return next((st for st in sg.current_steps() if st.name == name
                 and name not in sg.STEPS_BY_NAME), None)


@exercise
def saga_step_added(lab: Any, step: str = NOTIFY_STEP) -> Verdict:
    """A deployed saga step runs in a new saga, and its participant's effect is in the log."""
    added = _added_step(step)
    if added is None:
        return Verdict(None, f"no saga step {step!r} is deployed (saga_step(...) in the plugin)")
    view = lab.saga.wait(lab.fire("happy", lines=[(PLENTY_SKU, 1)]), timeout=20)
    sid = view["saga_id"]
    if step not in view.get("actions", []):
        return Verdict(False, f"saga {sid} ran {view.get('actions')}: {step} is not among its "
                              "steps; did deploy_code restart the orchestrator?")
    log = saga_log(lab, sid)
    effects = list(log[(log["step"] == step) & (log["role"] == "effect")]["event_type"])
    order = view["actions"]
    ok = (view["status"] == "completed" and view[step]["status"] == "succeeded"
          and order.index(step) == order.index("create_order") + 1 and bool(effects))
    return Verdict(ok, f"saga {sid}: {' → '.join(order)}; {step} {view[step]['status']}, "
                       f"saga {view['status']}; effects of {step} in the log: "
                       f"{effects or 'none (expected the events in its effects=...)'}")


@exercise
def compensation_plan(lab: Any, predicted: list[str] | None,
                      scenario: str = "out-of-stock") -> Verdict:
    """Predict the compensations of a failure, fire it, compare with the saga stream."""
    if predicted is None:
        return Verdict(None, "write predicted = [...] (the compensations, in the order they run)")
    view = lab.saga.wait(lab.fire(scenario), timeout=30)
    recorded = compensation_order(lab, view["saga_id"])
    steps = lab.saga.state(view["saga_id"]).steps
    done = [st.name for st in steps if view[st.name]["status"] == "succeeded"]
    ok = list(predicted) == recorded
    return Verdict(ok, f"{scenario}: saga {view['saga_id']} failed at {view['failed_step']} "
                       f"after {', '.join(done)}; predicted {list(predicted)}, the saga stream "
                       f"recorded {recorded}" + ("" if ok else
                                                 " (reverse order of the steps that succeeded)"))


@exercise
def handler_idempotent(lab: Any, name: str = NOTIFY_STEP,
                       service: str = "user-service") -> Verdict:
    """Send the same request twice (a retry, same Idempotency-Key): one effect only."""
    if (service, name) not in plugins.HANDLERS:
        return Verdict(None, f"no plugin handler {name!r} on {service} is deployed")
    oid = f"idem-{uuid.uuid4().hex[:8]}"
    body = {"order_id": oid, "user_id": "alice"}
    head = _head(lab)
    answers = []
    for _ in range(2):
        r = lab.http(service).post(f"/api/plugins/{name}", json=body,
                                   headers={"Idempotency-Key": f"saga-x:{name}:{oid}"})
        answers.append((r.status_code, r.json()))
    written = [e for e in lab.events(after=head, limit=1000).to_dict("records")
               if isinstance(e["data"], dict) and e["data"].get("order_id") == oid]
    if not written and answers[0][1] == {"result": None}:
        return Verdict(None, f"the handler {name} answered nothing and wrote nothing")
    ok = len(written) == 1 and answers[0][0] < 300 and answers[0] == answers[1]
    return Verdict(ok, f"two identical requests for order {oid} -> HTTP "
                       f"{answers[0][0]}, {answers[1][0]}; events about it in the log: "
                       f"{[e['event_type'] for e in written]} (expected exactly one"
                       f"{', the same answer twice' if answers[0] != answers[1] else ''})")


def _head(lab: Any) -> int:
    return int(lab.http("event-store-api").get("/api/events/stats").json().get(
        "last_position", 0))


# ---- 03 CQRS ---------------------------------------------------------------------------------


def _view(lab: Any, name: str) -> dict[str, Any] | None:
    if name not in plugins.PROJECTIONS:
        return None
    lab.wait_for_projection(_head(lab), name, timeout=20)
    return lab.query(f"views/{name}", limit=1000)


def _placed(lab: Any) -> list[dict[str, Any]]:
    return [e["data"] for e in lab.events(type=o.ORDER_PLACED, limit=100_000).to_dict("records")]


@exercise
def orders_per_user_view(lab: Any, name: str = "orders-per-user") -> Verdict:
    """query-service's `views/<name>` equals the log: orders placed per user."""
    got = _view(lab, name)
    if got is None:
        return Verdict(None, f"no projection {name!r} is deployed (projection(...) in the plugin)")
    docs = {d.get("key"): d for c in got["collections"].values() for d in c}
    expected = Counter(d["user_id"] for d in _placed(lab))
    seen = {u: (docs.get(u) or {}).get("orders") for u in expected}
    wrong = {u: (seen[u], n) for u, n in expected.items() if seen[u] != n}
    return Verdict(not wrong and bool(expected),
                   f"{name} through query-service: {len(docs)} users; orders per user "
                   + (f"equal the log's OrderPlaced events for all {len(expected)} users"
                      if not wrong else f"differ (view, log): {dict(list(wrong.items())[:5])}"
                      " — one document per user id with a field 'orders'"))


@exercise
def top_products_view(lab: Any, name: str = "top-products") -> Verdict:
    """query-service's `views/<name>`: units ordered per SKU, equal to the log."""
    got = _view(lab, name)
    if got is None:
        return Verdict(None, f"no projection {name!r} is deployed")
    docs = {d.get("key"): d for c in got["collections"].values() for d in c}
    expected: Counter[str] = Counter()
    for d in _placed(lab):
        for line in d["lines"]:
            expected[line["sku"]] += int(line["quantity"])
    wrong = {k: ((docs.get(k) or {}).get("units"), n) for k, n in expected.items()
             if (docs.get(k) or {}).get("units") != n}
    top = ", ".join(f"{k} {n}" for k, n in expected.most_common(3))
    return Verdict(not wrong and bool(expected),
                   f"{name}: top 3 in the log {top}; "
                   + ("the view agrees for every SKU" if not wrong else
                      f"the view differs (view, log): {dict(list(wrong.items())[:5])} — one "
                      "document per sku with a field 'units'"))


@exercise
def read_your_writes(lab: Any, fn: Callable[..., dict[str, Any]] | None) -> Verdict:
    """`fn(lab, name, email)` sends create-user and returns the user as query-service has it.

    The read side is held back while `fn` runs (local mode: the event processor is paused for
    `HOLD` s; cluster mode: its pod is deleted and the Deployment starts another), so an answer
    that reads without waiting for its command's position fails every time, not only when the
    processor happens to be slower than the read."""
    if fn is None:
        return Verdict(None, "write create_and_read(lab, name, email)")
    from labkit.lab import LabError

    email = f"ryw-{uuid.uuid4().hex[:8]}@example.com"
    with _read_side_held(lab):
        try:
            doc = fn(lab, "Ryw", email)
        except LabError as exc:
            if "404" not in str(exc):
                raise
            return Verdict(False, f"create_and_read read before the read side had the new user "
                                  f"({exc}); wait for the command's position first "
                                  "(lab.wait_for_projection(r['position'], 'users'))")
    if not isinstance(doc, dict):
        return Verdict(False, f"create_and_read returned {type(doc).__name__}, expected the user "
                              "document (a dict) from lab.query('users/<id>')")
    ok = doc.get("email") == email and doc.get("source") == "materialized_view"
    return Verdict(ok, f"read back {doc.get('email')!r} (expected {email!r}) from "
                       f"{doc.get('source')!r} at checkpoint {doc.get('checkpoint')}, with the "
                       "read side held back while it ran")


#: Seconds the local event processor is paused while a read-your-writes answer runs.
HOLD = 1.5


@contextlib.contextmanager
def _read_side_held(lab: Any) -> Iterator[None]:
    """The event processor does not project for a while: paused (local), or its pod deleted
    (cluster: the Deployment starts a new one, which catches up)."""
    if lab.mode == "cluster":
        lab.kill("event-processor")
        yield
        return
    import psutil

    pid = next((r["pid"] for r in lab.runtime.status()
                if r["service"] == "event-processor" and r.get("pid")), None)
    if pid is None:
        raise RuntimeError("event-processor is not running: lab.up() starts it")
    proc = psutil.Process(pid)
    proc.suspend()
    timer = threading.Timer(HOLD, proc.resume)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with contextlib.suppress(psutil.Error):
            proc.resume()


# ---- 04 Event Sourcing -----------------------------------------------------------------------

LEGACY_TYPE = "LoyaltyPointsAwarded"


@exercise
def upcaster_applied(lab: Any, event_type: str = LEGACY_TYPE) -> Verdict:
    """Append a v1 event; event-store-api (a running service) must return it as v2."""
    from ecommerce.domain.events import NewEvent, upcasters

    if (event_type, 1) not in getattr(upcasters, "_upcasters", {}):
        return Verdict(None, f"no upcaster for {event_type} v1 is deployed")
    stream = f"loyalty-{uuid.uuid4().hex[:8]}"
    lab.saga.store.append(stream, [NewEvent(event_type, {"pts": 10}, schema_version=1)], "none")
    got = lab.stream(stream)[0]
    want = {"points": 10, "reason": "unknown"}
    ok = got["schema_version"] == 2 and got["data"] == want
    return Verdict(ok, f"stored v1 {{'pts': 10}}; event-store-api returned v{got['schema_version']} "
                       f"{got['data']} (expected v2 {want})")


@exercise
def time_travel(lab: Any, fn: Callable[[list[dict[str, Any]], int], str | None] | None
                ) -> Verdict:
    """`fn(events, position)`: an order's status as of a global position, from its stream."""
    if fn is None:
        return Verdict(None, "write order_status_at(events, position)")
    view = lab.saga.wait(lab.fire("happy", lines=[(PLENTY_SKU, 1)]), timeout=20)
    events = lab.stream(f"{o.STREAM_PREFIX}{view['order_id']}")
    at = {e["event_type"]: e["position"] for e in events}
    probes = [(at[o.ORDER_PLACED] - 1, None), (at[o.ORDER_PLACED], o.PENDING),
              (at[o.ORDER_CONFIRMED] - 1, o.PENDING), (at[o.ORDER_CONFIRMED], o.CONFIRMED),
              (_head(lab), o.CONFIRMED)]
    got = [(p, fn(list(events), p), want) for p, want in probes]
    wrong = [f"at {p}: {g!r} (expected {w!r})" for p, g, w in got if g != w]
    return Verdict(not wrong, f"order {view['order_id']} (placed at #{at[o.ORDER_PLACED]}, "
                              f"confirmed at #{at[o.ORDER_CONFIRMED]}): "
                              + ("right at every position probed" if not wrong
                                 else "; ".join(wrong)))


class _Lockstep:
    """Makes the writers read together, so every write races another writer's: each read
    waits until every other writer still at work has read as often (at most `patience` s, a
    safety net for an answer that reads in some other way). That is the schedule that loses an
    update when writes do not name the version they read, so the check does not depend on the
    machine's timing to catch it."""

    def __init__(self, writers: int, patience: float = 5.0) -> None:
        self.reads = [0] * writers
        self.done = [False] * writers
        self.patience = patience
        self.cond = threading.Condition()

    def read(self, me: int) -> None:
        with self.cond:
            self.reads[me] += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: all(
                self.done[j] or self.reads[j] >= self.reads[me]
                for j in range(len(self.reads)) if j != me), timeout=self.patience)

    def finish(self, me: int) -> None:
        with self.cond:
            self.done[me] = True
            self.cond.notify_all()


class _SteppedStore:
    """The real event store, whose reads take their turn in a `_Lockstep`."""

    _READS = ("read_stream", "stream_version", "read_all")

    def __init__(self, store: Any, step: _Lockstep, me: int) -> None:
        self._store, self._step, self._me = store, step, me

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self._READS:
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self._step.read(self._me)
            return result

        return read


@exercise
def no_lost_updates(lab: Any, fn: Callable[[Any, str], int] | None, writers: int = 2,
                    each: int = 10) -> Verdict:
    """`fn(store, stream)` adds 1 to a counter stream; two writers at once lose nothing. The
    writers read in lockstep (`_Lockstep`): each write races the other writer's."""
    if fn is None:
        return Verdict(None, "write increment(store, stream)")
    from ecommerce.store.factory import open_event_store

    stream = f"counter-{uuid.uuid4().hex[:8]}"
    errors: list[str] = []
    step = _Lockstep(writers)

    def work(me: int) -> None:
        store = open_event_store(lab.settings)
        try:
            for _ in range(each):
                fn(_SteppedStore(store, step, me), stream)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            step.finish(me)
            store.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    values = [e["data"].get("value") for e in lab.stream(stream)]
    total = writers * each
    dupes = sorted(v for v, n in Counter(values).items() if n > 1)
    ok = not errors and values == list(range(1, total + 1))
    return Verdict(ok, f"{writers} writers × {each} increments: the stream holds {len(values)} "
                       f"events, last value {values[-1] if values else None} (expected 1..{total}"
                       f" once each){'; values written twice: ' + str(dupes[:8]) if dupes else ''}"
                       f"{'; errors: ' + errors[0] if errors else ''}")
