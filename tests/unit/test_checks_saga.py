"""The Saga checkpoints and their helpers; the notebooks that use them (02-saga, 05-checkpoints).

The pure parts run without a lab; the checks themselves run against a real local lab (separate
processes in a temporary data directory), pass, stay fast, and fail when the system misbehaves.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ecommerce.config import REPO_DIR
from labkit.workbook import checks

COURSE_ITEMS = ("Saga Orchestrator Job 정상 실행", "각 서비스별 트랜잭션 실행 확인",
                "보상 트랜잭션 동작 테스트", "분산 트랜잭션 상태 추적")
NOTEBOOKS = ("02-saga.ipynb", "05-checkpoints.ipynb")


# ---- without a lab ------------------------------------------------------------------------------
def test_the_saga_section_has_the_course_items_in_order():
    items = checks.items("Saga")
    assert len(items) == 5  # the course's four, then the invariants 02-saga checks too
    for item, course in zip(items, COURSE_ITEMS, strict=False):
        assert item.startswith(course), (item, course)
    assert items[-1] == checks.INVARIANTS_ITEM


def _log(*rows: tuple[int, str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"position": p, "writer": "w", "stream_id": "s", "event_type": t,
                          "step": step, "kind": kind, "role": role}
                         for p, t, step, kind, role in rows])


def test_decisions_first_accepts_effects_after_their_decision():
    log = _log((1, "SagaStarted", "", "saga", "decision"),
               (2, "StepStarted", "create_order", "action", "decision"),
               (3, "OrderPlaced", "create_order", "action", "effect"),
               (4, "StepSucceeded", "create_order", "action", "decision"),
               (5, "CompensationStarted", "create_order", "compensation", "decision"),
               (6, "OrderCancelled", "create_order", "compensation", "effect"))
    assert checks.decisions_first(log) == []


def test_decisions_first_reports_an_effect_nobody_decided():
    log = _log((1, "SagaStarted", "", "saga", "decision"),
               (2, "StepStarted", "create_order", "action", "decision"),
               (3, "OrderPlaced", "create_order", "action", "effect"),
               (4, "PaymentCharged", "charge_payment", "action", "effect"),  # no StepStarted
               # a compensation's effect needs CompensationStarted, not the action's StepStarted
               (5, "OrderCancelled", "create_order", "compensation", "effect"))
    problems = checks.decisions_first(log)
    assert len(problems) == 2
    assert "PaymentCharged at position 4" in problems[0] and "action charge_payment" in problems[0]
    assert "OrderCancelled at position 5" in problems[1]


def test_every_participant_effect_maps_to_a_saga_step():
    from ecommerce.domain import fate, orders, payments, stock
    from ecommerce.domain.saga import STEPS_BY_NAME

    for etype, (step, kind) in checks.effects().items():
        assert step in STEPS_BY_NAME and kind in ("action", "compensation"), etype
        if kind == "compensation":
            assert STEPS_BY_NAME[step].compensation, etype
    written = {*orders.ORDER_EVENTS, *stock.INVENTORY_EVENTS, *payments.PAYMENT_EVENTS,
               *fate.FATE_EVENTS}
    assert set(checks.effects()) <= written
    # what a saga makes a participant write is in the table (seeding, accounts and the admin
    # commands are not)
    assert written - set(checks.effects()) == {"StockSeeded", "AccountOpened", "AccountFunded",
                                             "StockRestocked"}


def test_job_summary_is_the_last_json_line_of_the_job_output():
    output = ('{"level": "info", "msg": "resuming unfinished sagas", "count": 2}\n'
              "not json\n"
              '{"resumed": 2, "by_status": {"completed": 2}, "unfinished": 0, "seconds": 0.1}\n')
    assert checks._job_summary(output) == {"resumed": 2, "by_status": {"completed": 2},
                                           "unfinished": 0, "seconds": 0.1}
    assert checks._job_summary("crashed") == {}


@pytest.mark.parametrize(("violation", "group"), [
    ("money: accounts hold 5 cents in total, but 6 were opened with", "money"),
    ("stock: KEYBOARD-MX available 1 + reserved 0 + sold 0 != initial 2", "stock"),
    ("payment: order o-1 was charged 2 times", "double"),
    ("payment: order o-1 does not exist but was charged", "orders"),
    ("order o-1 is CONFIRMED but its payment is missing", "orders"),
    ("saga s-1 failed (x): a compensation was refused", "saga"),
])
def test_invariant_violations_are_grouped_by_what_they_break(violation, group):
    assert checks._invariant_group(violation) == group


# ---- the notebooks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saga_notebooks_follow_the_workbook_conventions(name):
    from tests.unit import test_notebook_files

    test_notebook_files.test_notebook_conventions(name.removesuffix(".ipynb"), "student")
    nb = nbformat.read(REPO_DIR / "notebooks" / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    first_up = next(c for c in code if "lab.up(" in c)
    assert code.count(first_up) == 1 and "faults=True" in first_up  # failure scenarios need /faults
    if name == "02-saga.ipynb":
        assert 'checks.run(lab, "Saga")' in code[-1]
        for widget in ("widgets.order_form(", "widgets.failure_buttons("):
            assert sum(widget in c for c in code) == 1
        assert "```mermaid" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    else:
        assert "checks.run_all(lab)" in "".join(code) and code[-1] == "checks.assert_ok(results)"
        prose = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for question in ("패턴 비교", "Kubernetes Native", "복잡도 분석", "실무 적용"):
            assert question in prose


def test_output_checked_cells_are_silent_and_pass_without_a_lab():
    """Notebooks are stored without outputs, so a `# NBVAL_CHECK_OUTPUT` cell passes only if it
    prints nothing: those cells must be deterministic assertions that need no running lab."""
    checked = [c.source for name in NOTEBOOKS
               for c in nbformat.read(REPO_DIR / "notebooks" / name, as_version=4).cells
               if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert 1 <= len(checked) <= 3
    for source in checked:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(source, "<cell>", "exec"), {})
        assert out.getvalue() == ""


# ---- against a real lab ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The whole system as local processes in a temporary data directory."""
    from tests.integration.labs import full_lab

    with full_lab(tmp_path_factory.mktemp("saga-checks") / "data", faults=True) as lab:
        yield lab


def _orchestrator(lab) -> str:
    return lab.status().set_index("service").loc["saga-orchestrator", "status"]


@pytest.mark.slow
def test_saga_checks_pass_against_the_running_system(real_lab):
    # How long they take is for `labkit bench`, never asserted (a loaded machine is slower).
    results = [checks.run_one(real_lab, cp) for cp in checks.REGISTRY["Saga"]]
    assert [r.ok for r in results] == [True] * 5, [(r.item, r.evidence) for r in results]
    checks.assert_ok(results)
    job, participants, compensation, tracking, invariants = (r.evidence for r in results)
    assert invariants.count("✅") == 5  # over every saga the four checks above ran
    assert '"unfinished": 0' in job and "['completed', 'compensated']" in job
    # a confirmed order's reservation becomes a sale (COMMITTED) within half a second
    assert "CONFIRMED" in participants and "CHARGED" in participants
    assert "RESERVED" in participants or "COMMITTED" in participants
    assert "['release_stock', 'cancel_order']" in compensation
    assert "equals lab.saga.status()" in tracking
    assert _orchestrator(real_lab) == "ready"  # the Job check starts the follower again


@pytest.mark.slow
def test_the_job_check_works_when_the_orchestrator_is_already_stopped(real_lab):
    real_lab.kill("saga-orchestrator")
    result = checks.run_one(real_lab, checks.REGISTRY["Saga"][0])
    assert result.ok, result.evidence
    assert "was stopped" in result.evidence
    assert _orchestrator(real_lab) == "ready"


@pytest.mark.slow
def test_saga_checks_fail_with_evidence_when_a_participant_misbehaves(real_lab):
    by_item = {cp.item.split(":")[0]: cp for cp in checks.REGISTRY["Saga"]}
    real_lab.faults.inject("payment-service", "decline")  # the next charge is refused
    try:
        result = checks.run_one(real_lab, by_item["각 서비스별 트랜잭션 실행 확인"])
    finally:
        real_lab.faults.clear()
    assert result.ok is False
    assert "compensated" in result.evidence and "CANCELLED" in result.evidence
    with pytest.raises(checks.CheckpointError, match="각 서비스별 트랜잭션 실행 확인"):
        checks.assert_ok([result])


@pytest.mark.slow
def test_saga_log_and_helpers_on_real_sagas(real_lab, tmp_path):
    from labkit.workbook import plots

    sid = real_lab.fire("payment-declined", wait=True)
    log = checks.saga_log(real_lab, sid)
    assert checks.decisions_first(log) == []
    effects = log[log["role"] == "effect"]
    assert {"OrderPlaced", "ReservationMade", "PaymentDeclined", "ReservationReleased",
            "OrderCancelled"} <= set(effects["event_type"])
    assert set(log.loc[log["role"] == "decision", "writer"]) == {"saga-orchestrator"}
    assert checks.compensation_order(real_lab, sid) == ["release_stock", "cancel_order"]
    view = real_lab.saga.status(sid)
    records = {r["service"]: r for r in checks.participant_records(real_lab, view["order_id"], "bob")}
    assert records["payment-service"]["http"] == 404
    assert records["order-service"]["status"] == "CANCELLED"
    table = checks.saga_invariants(real_lab)
    assert table["ok"].all(), table.to_dict("records")
    assert len(table) == 5
    # the figure the notebook draws for it, saved as a PNG
    path = plots.save(plots.saga_gantt(real_lab.saga.timeline(sid), title="payment-declined"),
                      tmp_path / "gantt.png")
    assert Path(path).stat().st_size > 10_000
