"""What the command line refuses, it refuses in one sentence and without a traceback: a number
out of range is a usage error (exit 2) naming the option and the range it must be in; a name
that is not one of the lab's processes is refused by every command that takes one (exit 1);
an unknown saga's timeline fails as its status does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecommerce.domain.events import NewEvent
from ecommerce.saga.orchestrator import start_saga
from ecommerce.store.sqlite_events import SqliteEventStore
from labkit.cli import main
from labkit.lab import Lab
from labkit.runtime.local import RuntimeErrorWithHint
from tests.unit.test_saga_orchestrator import PRICES

HUGE = "99999999999999999999999"
INT64 = str(2**63 - 1)


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local SQLite lab (nothing running) whose log holds one event."""
    for var in ("LABKIT_PG_URL", "LABKIT_REDIS_URL", "LABKIT_EVENTS_DB", "LABKIT_READ_DB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LABKIT_MODE", "local")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    with SqliteEventStore(tmp_path / "events.db") as store:
        store.append("user-1", [NewEvent("Foo", {"a": 1})], "any")
    return tmp_path


@pytest.mark.parametrize(("argv", "says"), [
    pytest.param(["events", "park", HUGE, "--reason", "x"],
                 f"'POSITION': {HUGE} is not in the range 1<=x<={INT64}", id="park-huge"),
    pytest.param(["events", "park", "0", "--reason", "x"],
                 f"'POSITION': 0 is not in the range 1<=x<={INT64}", id="park-0"),
    pytest.param(["events", "tail", "--after", HUGE],
                 f"'--after': {HUGE} is not in the range 0<=x<={INT64}", id="after-huge"),
    pytest.param(["events", "tail", "--after", "-5"],
                 f"'--after': -5 is not in the range 0<=x<={INT64}", id="after-negative"),
    pytest.param(["events", "tail", "--limit", HUGE],
                 f"'--limit': {HUGE} is not in the range 1<=x<=1000", id="limit-huge"),
    pytest.param(["events", "append", "user-y", "Foo", '{"a": 1}', "--expected-version", HUGE],
                 f"--expected-version: expected_version must be between 0 and {INT64}",
                 id="expected-version-huge"),
    pytest.param(["logs", "gateway", "--tail", "0"], "'--tail': 0 is not in the range x>=1",
                 id="tail-0"),
    pytest.param(["logs", "gateway", "--tail", "-5"], "'--tail': -5 is not in the range x>=1",
                 id="tail-negative"),
])
def test_a_number_out_of_range_is_a_usage_error_naming_the_option_and_range(
        lab_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_numbers_in_range_still_work(lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "tail", "--after", INT64, "--limit", "1000"]) == 0
    assert main(["events", "tail", "--after", "0", "--limit", "1"]) == 0
    assert "user-1" in capsys.readouterr().out
    assert main(["events", "park", "999999999", "--reason", "x"]) == 1
    assert "error: no event at position 999999999 (the log's head is 1)" in capsys.readouterr().err


UNKNOWN = "error: unknown process {!r}; known: user-service, order-service, "


@pytest.mark.parametrize("argv", [
    pytest.param(["kill", "nope"], id="kill"),
    pytest.param(["logs", "nope"], id="logs"),
    pytest.param(["logs", "x" * 5000], id="logs-name-too-long-for-a-file"),
    pytest.param(["rollback", "nope"], id="rollback"),
    pytest.param(["rollback", "postgres"], id="rollback-a-database"),
    pytest.param(["restart", "nope"], id="restart"),
])
def test_every_command_taking_a_process_refuses_an_unknown_name_alike(
        lab_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(UNKNOWN.format(argv[1])) and "Traceback" not in err


def test_the_python_api_raises_the_same_sentence(lab_dir: Path) -> None:
    lab = Lab(gateway_port=0)
    for call in (lab.kill, lab.logs, lab.rollback, lab.restart):
        with pytest.raises(RuntimeErrorWithHint, match="unknown process 'nope'; known: "):
            call("nope")


def test_the_timeline_of_an_unknown_saga_fails_as_its_status_does(
        lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteEventStore(lab_dir / "events.db") as store:
        sid = start_saga(store, "u1", [("KB", 1)], prices=PRICES)
    assert main(["saga", "status", "nope"]) == 2
    status_err = capsys.readouterr().err
    assert main(["saga", "timeline", sid, "nope"]) == 2
    assert capsys.readouterr().err == status_err == (
        "error: no saga 'nope' (stream saga-nope is empty)\n")
    assert main(["saga", "timeline", sid]) == 0
