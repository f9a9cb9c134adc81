"""The orchestrator's retries of unexpected errors are bounded: then the saga is recorded as
stuck, in its stream, and stays stuck for every orchestrator until an operator retries it.

Each test fails on the original orchestrator, which retried any unexpected exception every
second, forever, and recorded nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ecommerce.domain import saga as s
from ecommerce.saga.orchestrator import Orchestrator, pending_saga_ids, start_saga
from ecommerce.store.sqlite_events import SqliteEventStore
from labkit.lab.saga_client import SagaClient, SagaStuckError
from labkit.ops import invariants
from tests.unit.test_saga_orchestrator import FAST, PRICES, World
from tests.waiting import wait_until


class Buggy(World):
    """Participants whose client raises (a bug, not an answer) on one action until fixed."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.broken = action
        self.calls = 0

    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome:
        if action == self.broken:
            self.calls += 1
            raise RuntimeError(f"bug in the {action} client")
        return super().call(action, kind, saga)


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    es = SqliteEventStore(tmp_path / "events.db")
    yield es
    es.close()


def orchestrator(store: SqliteEventStore, world: World, **kw: Any) -> Orchestrator:
    return Orchestrator(store, world, policy=FAST, max_attempts=3, error_backoff=0.001, **kw)


def test_a_saga_that_keeps_failing_is_recorded_as_stuck_after_bounded_attempts(
        store: SqliteEventStore) -> None:
    world = Buggy("charge_payment")
    sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
    orch = orchestrator(store, world)
    try:
        state = orch.run(sid)
    finally:
        orch.close()
    assert state.status == "stuck" and world.calls == 3
    last = store.read_stream(s.stream_id(sid))[-1]
    assert last.type == s.SAGA_STUCK
    assert last.data["error"] == "RuntimeError: bug in the charge_payment client"
    assert last.data["attempts"] == 3 and last.data["at_step"] == "charge_payment"
    assert last.data["status"] == "running"

    # Durable: a new orchestrator (another process, a restart) leaves it alone.
    assert pending_saga_ids(store) == []
    again = orchestrator(store, world)
    try:
        assert again.run(sid).status == "stuck"
    finally:
        again.close()
    assert world.calls == 3

    # Readers see it, with the error: the saga list, wait(), the invariant report.
    client = SagaClient(store, prices=PRICES)
    row = client.summaries()[0]
    assert row["status"] == "stuck" and "bug in the charge_payment client" in row["stuck_error"]
    with pytest.raises(SagaStuckError, match="labkit saga retry"):
        client.wait(sid, timeout=5)
    state_of = invariants.SystemState([], {}, {}, {}, {}, Counter(),
                                      {sid: client.state(sid)})
    report = invariants.check_state(state_of)
    assert report.stuck == [f"{sid}: RuntimeError: bug in the charge_payment client"]


def test_an_operator_retry_lets_a_following_orchestrator_finish_it(
        store: SqliteEventStore) -> None:
    world = Buggy("reserve_stock")
    orch = orchestrator(store, world, workers=2)
    stop = threading.Event()
    follower = threading.Thread(target=orch.follow, args=(stop, 0.002))
    follower.start()
    client = SagaClient(store, prices=PRICES)
    try:
        sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
        wait_until(lambda: client.state(sid).status == "stuck", what="the saga to be stuck")
        assert world.calls == 3
        with pytest.raises(s.SagaRuleError, match="only a stuck saga"):
            client.retry(start_saga(store, "u1", [("KB", 1)], prices=PRICES))  # not stuck
        world.broken = ""  # the operator fixed the cause
        view = client.retry(sid)
        assert view["status"] == "running" and view["stuck_error"] == ""
        done = wait_until(lambda: client.state(sid).terminal and client.state(sid),
                          what="the retried saga to end")
    finally:
        stop.set()
        follower.join(10)
        orch.close()
    assert done.status == "completed"
    types = [e.type for e in store.read_stream(s.stream_id(sid))]
    assert types.index(s.SAGA_STUCK) < types.index(s.SAGA_RESUMED) < types.index(s.SAGA_COMPLETED)
    assert world.effects[("reserve_stock", done.order_id)] == 1


def test_a_stream_that_cannot_even_be_folded_is_still_recorded_as_stuck(
        store: SqliteEventStore) -> None:
    from ecommerce.domain.events import NewEvent

    sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
    # An event the decider cannot read (a step that does not exist): folding raises.
    store.append(s.stream_id(sid), [NewEvent(s.STEP_STARTED, {"step": "teleport"})], 1)
    orch = orchestrator(store, World())
    try:
        state = orch.run(sid)
    finally:
        orch.close()
    assert state.status == "stuck"
    last = store.read_stream(s.stream_id(sid))[-1]
    assert last.type == s.SAGA_STUCK and "teleport" in last.data["error"]
    assert pending_saga_ids(store) == []


def test_the_cli_lists_a_stuck_saga_with_its_error_and_retries_it(
        store: SqliteEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.cli import main

    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LABKIT_MODE", "local")
    monkeypatch.delenv("LABKIT_PG_URL", raising=False)
    monkeypatch.delenv("LABKIT_EVENTS_DB", raising=False)
    sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
    orch = orchestrator(store, Buggy("validate_user"))
    try:
        orch.run(sid)
    finally:
        orch.close()
    capsys.readouterr()
    assert main(["saga", "list"]) == 0
    listed = capsys.readouterr().out
    assert sid in listed and "stuck: RuntimeError: bug in the validate_user client" in listed
    assert main(["saga", "list", "--status", "stuck", "--json"]) == 0
    assert sid in capsys.readouterr().out
    assert main(["saga", "retry", sid]) == 0
    assert "RUNNING" in capsys.readouterr().out
    assert main(["saga", "retry", sid]) == 2
    assert "not stuck" in capsys.readouterr().err


def test_a_saga_that_waits_for_a_service_names_it_not_the_orchestrator(tmp_path: Path) -> None:
    """`labkit saga place --wait` with payment-service down said "Is the saga-orchestrator
    running?" while the orchestrator was retrying the charge."""
    from ecommerce.domain.saga_view import describe
    from labkit.lab.saga_client import SagaTimeout

    with SqliteEventStore(tmp_path / "events.db") as store:
        sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
        view = describe(s.fold(sid, store.read_stream(s.stream_id(sid))))
    assert "Is the saga-orchestrator running?" in str(SagaTimeout(sid, view, 5.0))
    view["charge_payment"].update(status="running", attempts=3, error="ConnectError")
    said = str(SagaTimeout(sid, view, 5.0))
    assert said == (f"saga {sid} is still running after 5.0s (in progress: charge_payment at "
                    "payment-service, attempt 3, last error: ConnectError). Is payment-service "
                    "answering? (lab.status(), lab.logs(...)); the saga-orchestrator retries "
                    "until the step's deadline"), said
