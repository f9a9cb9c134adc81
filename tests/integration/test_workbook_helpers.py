"""The workbook's named helpers against a real lab: sagas labelled by what happened to them,
the latest-sagas chart, the crash chart's gap, the saga stream table, the service table."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from ecommerce.domain import saga as s
from labkit.lab import Lab
from labkit.workbook import checks, figures, tables
from tests.integration.labs import full_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with full_lab(tmp_path_factory.mktemp("helpers") / "data") as lab:
        yield lab


@pytest.fixture(scope="module")
def sagas(lab: Lab) -> dict[str, str]:
    ids = {name: lab.fire(name) for name in ("happy", "payment-declined", "invalid-user")}
    lab.saga.wait_all(ids.values())
    ids["orchestrator-crash"] = lab.fire("orchestrator-crash", wait=True)
    return ids


def test_timelines_and_the_latest_chart_name_each_saga_by_what_happened(lab, sagas) -> None:
    timeline = lab.saga.timeline(list(sagas.values()))
    labels = timeline.groupby("saga")["label"].first()
    for name, sid in sagas.items():
        assert labels[sid].startswith(f"{name} · "), labels[sid]
    latest = lab.saga.latest(2)
    assert list(dict.fromkeys(latest["saga"]))[-1] == sagas["orchestrator-crash"]
    fig = figures.latest_sagas(lab, 2)
    bold = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_fontweight() == "bold"]
    assert len(bold) == 2 and bold[-1].startswith("orchestrator-crash · alice")


def test_the_crash_saga_has_two_orchestrators_and_a_gap_between_them(lab, sagas) -> None:
    sid = sagas["orchestrator-crash"]
    stream = tables.saga_stream(lab, sid)
    assert list(stream.columns) == ["position", "version", "event_type", "step", "attempt",
                                    "owner", "recorded_at"]
    assert stream["owner"].iloc[0] == "(lab.saga.place_order)"
    drivers = tables.orchestrators(stream)
    assert len(drivers) == 2
    died, resumed = figures.orchestrator_gap(lab, sid)
    assert died < resumed
    assert figures.orchestrator_gap(lab, sagas["happy"]) is None
    fig = figures.crash_gantt(lab, sid)
    assert any("오케스트레이터 없음" in t.get_text() for t in fig.legends[0].get_texts())


def test_saga_outcomes_and_service_addresses(lab, sagas) -> None:
    outcomes = checks.saga_outcomes(lab, {k: sagas[k] for k in ("payment-declined",
                                                                "invalid-user")})
    row = outcomes.set_index("scenario").loc["payment-declined"]
    assert (row["failed at"], row["reason"]) == ("charge_payment", "declined")
    assert row["compensated (recorded order)"] == "release_stock → cancel_order"
    addresses = tables.service_addresses(lab).set_index("service")
    assert addresses.loc["query-service", "this lab (local)"] == lab.url("query-service")
    assert addresses.loc["query-service", "env var"] == "LABKIT_QUERY_SERVICE_URL"


def test_the_log_table_reads_a_stamp_that_has_no_microseconds(lab, sagas) -> None:
    """A log written before iso_utc() can hold "...:51+00:00" among "...:51.123456+00:00"
    (isoformat() drops a zero microsecond). lab.events() read such a row with the format it
    took from the first row and failed: the 04 and 05 checks, in CI on 2026-11-30."""
    stream = s.stream_id(sagas["happy"])
    with contextlib.closing(sqlite3.connect(lab.settings.events_db)) as db, db:
        db.execute("UPDATE events SET recorded_at = substr(recorded_at, 1, 19) || '+00:00' "
                   "WHERE position = (SELECT MAX(position) FROM events WHERE stream_id = ?)",
                   (stream,))
    log = lab.events(stream=stream)
    assert len(log) > 2 and str(log["recorded_at"].dt.tz) == "UTC"
    last = log["recorded_at"].iloc[-1]
    assert last.microsecond == 0 and last >= log["recorded_at"].iloc[0].floor("s")


def test_a_scenario_whose_service_is_down_says_which_and_how_to_start_it(
        lab, sagas, monkeypatch, capsys) -> None:
    """`labkit fire happy` with payment-service killed ended in an httpx.ConnectError traceback
    (or ReadError, on a kept-alive connection)."""
    from labkit.cli import main
    from labkit.lab.scenarios import ScenarioError

    lab.kill("payment-service")
    try:
        with pytest.raises(ScenarioError, match=r"^payment-service is not reachable at "
                                                r"http://127\.0\.0\.1:\d+/api/payments/"
                                                r"accounts \(\w+Error\); is the service "
                                                r"running\? \(lab\.status\(\)"):
            lab.fire("happy")
        s = lab.settings
        monkeypatch.setenv("LABKIT_DATA_DIR", str(s.data_dir))
        capsys.readouterr()
        assert main(["fire", "happy"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: payment-service is not reachable at "), err
    finally:
        lab.up(progress=False)
    assert lab.saga.wait(lab.fire("happy"), timeout=60)["status"] == "completed"
