"""Notebook 01's exercises against a running lab: the instructor edition's answers pass (the
gateway really routes by the student's rules), the student edition's stubs say "not done yet"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from ecommerce.config import REPO_DIR
from labkit.lab import Lab
from labkit.workbook import network_exercises as ex
from tests.integration.labs import lab_settings

ANSWERS = ("SHOP_ROUTE", "REPORTS_ROUTE", "COMMAND_POLICY")


def _answers(path: Path) -> dict[str, str | None]:
    """Run the cells of a notebook that define the exercise answers (plain assignments)."""
    scope: dict = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and any(cell.source.startswith(f"{a} = ") for a in ANSWERS):
            exec(compile(cell.source, str(path), "exec"), scope)
    return {a: scope[a] for a in ANSWERS}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    data = tmp_path_factory.mktemp("ex01") / "data"
    lab = Lab(lab_settings(data), gateway_port=0)
    try:
        lab.up(step="03-cqrs", progress=False)
        yield lab
    finally:
        lab.reset()


def _checks(lab: Lab, answers: dict[str, str | None]) -> list[ex.ExerciseResult]:
    return [
        ex.check_route(lab, answers["SHOP_ROUTE"], "GET", "/shop/stock/MOUSE-WL",
                       service="inventory-service", upstream="/api/inventory/MOUSE-WL",
                       name="shop-stock"),
        ex.check_route(lab, answers["REPORTS_ROUTE"], "GET", "/user-stats", host="reports.local",
                       service="query-service", upstream="/api/queries/user-stats", name="reports"),
        ex.check_policy(lab, answers["COMMAND_POLICY"], target="command-service"),
    ]


def test_the_instructor_answers_pass_through_the_running_gateway(lab: Lab) -> None:
    results = _checks(lab, _answers(REPO_DIR / "notebooks" / "instructor" / "01-networking.ipynb"))
    assert [r.ok for r in results] == [True, True, True], [r.line for r in results]
    # the gateway really served them: a plain request takes the student's rule
    answer = lab.http("gateway").get("/shop/stock/MOUSE-WL")
    assert answer.status_code == 200 and answer.json()["sku"] == "MOUSE-WL"


def test_the_student_stubs_are_not_done_yet_and_a_wrong_rule_says_what_it_saw(lab: Lab) -> None:
    ex.remove_routes(lab)
    results = _checks(lab, _answers(REPO_DIR / "notebooks" / "01-networking.ipynb"))
    assert [r.ok for r in results] == [None, None, None]
    answers = _answers(REPO_DIR / "notebooks" / "instructor" / "01-networking.ipynb")
    wrong = answers["SHOP_ROUTE"].replace("ReplacePrefixMatch, replacePrefixMatch: /api/inventory",
                                          "ReplaceFullPath, replaceFullPath: /api/inventory")
    result = ex.check_route(lab, wrong, "GET", "/shop/stock/MOUSE-WL", service="inventory-service",
                            upstream="/api/inventory/MOUSE-WL", name="shop-stock")
    assert result.ok is False and "upstream /api/inventory," in result.message
    assert "URLRewrite" in result.message
