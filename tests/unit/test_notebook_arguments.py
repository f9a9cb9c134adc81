"""Arguments the notebook API refuses in one sentence, before it sends or draws anything:
counts of sagas, unknown saga ids in a timeline, requests `lab.trace` will not send."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecommerce.saga.orchestrator import start_saga
from ecommerce.store.sqlite_events import SqliteEventStore
from labkit.lab.saga_client import SagaClient
from labkit.lab.trace import TraceError, trace
from labkit.ops.fault_client import Faults
from tests.unit.test_saga_orchestrator import PRICES


@pytest.fixture
def client(tmp_path: Path):
    with SqliteEventStore(tmp_path / "events.db") as store:
        for _ in range(3):
            start_saga(store, "u1", [("KB", 1)], prices=PRICES)
        yield SagaClient(store, prices=PRICES)


def test_a_count_of_sagas_is_a_whole_number_from_one(client: SagaClient) -> None:
    """`summaries(limit=0)` returned every saga and `limit=-1` all but one."""
    assert len(client.summaries(limit=2)) == 2 and len(client.summaries(limit=None)) == 3
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match=r"limit is how many sagas: a whole number >= 1 "
                                             r"\(None: all\), not "):
            client.summaries(limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^n is how many sagas: a whole number >= 1, not"):
            client.latest(bad)  # type: ignore[arg-type]
    assert "saga" in client.latest(1).columns  # nothing ran them: no steps, but no error


def test_a_timeline_of_an_unknown_saga_fails_as_its_status_does(client: SagaClient) -> None:
    """`timeline(["nope"])` was an empty table while `status("nope")` raised."""
    known = client.summaries(limit=1)[0]["saga_id"]
    with pytest.raises(KeyError) as status_error:
        client.status("nope")
    with pytest.raises(KeyError) as timeline_error:
        client.timeline([known, "nope"])
    assert timeline_error.value.args == status_error.value.args
    assert list(client.timeline(known).columns)[:2] == ["saga", "step"]


@pytest.mark.parametrize(("args", "says"), [
    (("GET", "http://localhost:8080/api/users"), "path is the path only, starting with '/'"),
    (("GET", "api/users"), "path is the path only"),
    ((None, "/api/users"), "method is an HTTP method such as 'GET'"),
    (("GET /x", "/api/users"), "method is an HTTP method"),
    (("GET", "/api/users", 5), "host is a host name such as 'api.local', not 5"),
])
def test_trace_refuses_what_it_would_not_send_before_sending(args, says) -> None:
    """A full URL was sent to whatever host it named; a bad method or host was a raw httpx
    error. `lab` is None: nothing may be sent before the check."""
    with pytest.raises(TraceError, match=says):
        trace(None, *args)


def test_the_faults_helper_names_its_own_methods() -> None:
    faults = Faults(lambda name: "http://127.0.0.1:1")
    shown = repr(faults)
    for name in ("inject", "clear", "armed"):
        assert f"{name}(" in shown and callable(getattr(faults, name))


@pytest.mark.parametrize("tail", [0, -5, None, "3"])
def test_a_log_tail_is_a_whole_number_from_one(tail, tmp_path: Path, monkeypatch) -> None:
    """`lab.logs("gateway", tail=0)` returned the whole log; None was a raw TypeError."""
    from labkit.lab import Lab, LabError

    monkeypatch.setenv("LABKIT_MODE", "local")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    with pytest.raises(LabError, match=r"^tail is how many lines: a whole number >= 1, not "):
        Lab().logs("gateway", tail=tail)
