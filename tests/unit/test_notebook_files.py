"""The notebook files: instructor pairs, the student edition, `labkit notebooks build|check|reset`,
and the notebooks' conventions (no outputs, a plain cell after each widget, Korean narrative,
checkpoints, diagrams small enough to read at 1024x768)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from ecommerce.config import REPO_DIR
from labkit.workbook import mermaid, notebook_files

NOW = datetime(2026, 3, 5, 14, 30, 0)
EDITIONS = ("instructor", "student")
#: How the cell right after a widget cell says what it is (it calls the same function).
WIDGET_TWIN = "위젯 없이 같은 함수를 부르는 셀"
NAMES = notebook_files.names()


def _instructor_source(tmp: Path, cells: list) -> Path:
    """A notebooks/ folder with one instructor notebook `10-try` (both files of the pair) and its
    student edition, as `labkit notebooks build` leaves them."""
    nb_dir = tmp / "notebooks"
    (nb_dir / "instructor").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "instructor" / "10-try.ipynb")
    notebook_files.build(prefer="ipynb", notebooks_dir=nb_dir)
    return nb_dir


EXERCISE = """answer = None
### BEGIN SOLUTION
answer = ["refund_payment", "release_stock", "cancel_order"]
### END SOLUTION
print(answer)"""

PROJECTION = """def project(event):
    ### BEGIN SOLUTION
    if event.type == "OrderPlaced":
        return [("orders_per_user", event.data["user_id"], 1)]
    ### END SOLUTION
    return []"""


@pytest.fixture
def nb_dir(tmp_path: Path) -> Path:
    return _instructor_source(tmp_path, [
        nbformat.v4.new_markdown_cell("# 10. 연습\n\n## 🎯 목표\n- 보상 순서를 예측한다"),
        nbformat.v4.new_code_cell(EXERCISE),
        nbformat.v4.new_code_cell(PROJECTION),
        nbformat.v4.new_markdown_cell("질문: 왜 역순인가?\n\n<!-- BEGIN SOLUTION -->\n"
                                      "나중에 한 일이 먼저 한 일에 기대기 때문이다.\n<!-- END SOLUTION -->"),
        nbformat.v4.new_markdown_cell("모범 답안: 보상은 역순으로 실행된다.",
                                      metadata={"tags": ["solution"]}),
    ])


# ---- the student edition ------------------------------------------------------------------------
def test_the_student_edition_has_stubs_where_the_solutions_were_and_still_runs(nb_dir: Path):
    student = nbformat.read(nb_dir / "10-try.ipynb", as_version=4)
    code = [c.source for c in student.cells if c.cell_type == "code"]
    assert code[0] == "answer = None\n# ✍️ 여기에 코드를 작성하세요 (YOUR CODE HERE)\npass\nprint(answer)"
    assert code[1].splitlines()[1:3] == ["    # ✍️ 여기에 코드를 작성하세요 (YOUR CODE HERE)", "    pass"]
    scope: dict = {}
    for source in code:  # the stubs run: nothing raises, the exercise is simply not done
        exec(compile(source, "<cell>", "exec"), scope)
    assert scope["answer"] is None and scope["project"](object()) == []
    prose = "".join(c.source for c in student.cells if c.cell_type == "markdown")
    assert "여러분의 답을 적어 보세요" in prose
    assert "모범 답안" not in prose and "기대기 때문" not in prose  # tagged cell and region are gone
    assert "jupytext" not in student.metadata and student.metadata["labkit"]["edition"] == "student"


def _solution_lines(nb) -> set[str]:
    """Every non-trivial line inside a solution region or a solution cell of an instructor notebook."""
    return {ln.strip() for ln, solution in _lines(nb) if solution and len(ln.strip()) > 8}


def _lines(nb):
    """Each line of the instructor edition, with whether it is part of a solution (a cell
    tagged `solution`, or between the BEGIN/END SOLUTION markers; the markers are neither)."""
    for cell in nb.cells:
        tagged = "solution" in cell.get("metadata", {}).get("tags", [])
        inside = False
        for ln in cell.source.splitlines():
            if not tagged and ln.strip() in ("### BEGIN SOLUTION", "<!-- BEGIN SOLUTION -->"):
                inside = True
            elif not tagged and ln.strip() in ("### END SOLUTION", "<!-- END SOLUTION -->"):
                inside = False
            else:
                yield ln, tagged or inside


def _student_text(nb) -> str:
    return "\n".join(c.source for c in nb.cells)


def _given_text(nb) -> str:
    """The instructor edition without its solutions: what the student is given anyway (a
    solution may repeat a given line, e.g. the handler it makes idempotent)."""
    return "\n".join(ln for ln, solution in _lines(nb) if not solution)


def test_the_fixture_student_edition_contains_no_solution_text(nb_dir: Path):
    instructor = nbformat.read(nb_dir / "instructor" / "10-try.ipynb", as_version=4)
    solutions = _solution_lines(instructor)
    assert len(solutions) >= 4
    text = _student_text(nbformat.read(nb_dir / "10-try.ipynb", as_version=4))
    assert not [ln for ln in solutions if ln in text]
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


@pytest.mark.parametrize("name", NAMES)
def test_the_student_editions_contain_no_solution_text(name: str):
    instructor = notebook_files.read_instructor(name)
    text = _student_text(nbformat.read(REPO_DIR / "notebooks" / f"{name}.ipynb", as_version=4))
    given = _given_text(instructor)
    leaked = [ln for ln in _solution_lines(instructor) if ln in text and ln not in given]
    assert not leaked, f"{name}: solution text in the student edition: {leaked[:3]}"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_an_unclosed_solution_region_is_reported_with_its_cell(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1")])
    with pytest.raises(notebook_files.NotebookError, match=r"10-try cell 1: .* never closed"):
        notebook_files.student_edition(nb, "10-try")


# ---- pairs, check and build ---------------------------------------------------------------------
def test_the_committed_notebooks_pass_the_check():
    assert [str(p) for p in notebook_files.check()] == []


def test_a_jupyterlab_edit_survives_the_check_and_a_rebuild(nb_dir: Path):
    """Save an edited notebook through the contents manager JupyterLab runs when jupytext is
    installed (jupytext derives it from AsyncLargeFileManager): both files of the pair change
    together, and a rebuild carries the edit into the student edition without touching the pair."""
    import asyncio

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(root_dir=str(nb_dir))
    model = asyncio.run(manager.get("instructor/10-try.ipynb"))
    ids_before = [c["id"] for c in model["content"]["cells"]]
    model["content"]["cells"][0]["source"] = "# 10. 연습 (강사가 JupyterLab에서 고침)\n\n## 🎯 목표"
    asyncio.run(manager.save(model, "instructor/10-try.ipynb"))

    md = (nb_dir / "instructor" / "10-try.md").read_text(encoding="utf-8")
    assert "강사가 JupyterLab에서 고침" in md  # the readable diff is in the .md
    problems = [str(p) for p in notebook_files.check(nb_dir)]
    assert problems == [f"{nb_dir / '10-try.ipynb'}: student edition out of date: run "
                        "`labkit notebooks build`"]
    results = notebook_files.build(notebooks_dir=nb_dir)
    assert [r.student for r in results] == ["written"]
    assert notebook_files.check(nb_dir) == []
    student = nbformat.read(nb_dir / "10-try.ipynb", as_version=4)
    assert "강사가 JupyterLab에서 고침" in student.cells[0].source
    instructor = nbformat.read(nb_dir / "instructor" / "10-try.ipynb", as_version=4)
    assert [c.id for c in instructor.cells] == ids_before  # cell ids are stable
    assert [c.id for c in student.cells] == ids_before[:-1]  # the solution cell is left out


def test_an_edit_to_the_markdown_source_alone_is_out_of_sync_until_built(nb_dir: Path):
    md = nb_dir / "instructor" / "10-try.md"
    ids_before = [c.id for c in nbformat.read(nb_dir / "instructor" / "10-try.ipynb", as_version=4).cells]
    md.write_text(md.read_text(encoding="utf-8").replace("보상 순서를 예측한다", "보상 순서를 맞힌다"),
                  encoding="utf-8")
    assert any("out of sync with 10-try.ipynb" in str(p) for p in notebook_files.check(nb_dir))
    notebook_files.build(prefer="md", notebooks_dir=nb_dir)
    assert notebook_files.check(nb_dir) == []
    instructor = nbformat.read(nb_dir / "instructor" / "10-try.ipynb", as_version=4)
    assert "보상 순서를 맞힌다" in instructor.cells[0].source
    assert [c.id for c in instructor.cells] == ids_before


def test_stored_outputs_and_stray_student_notebooks_are_reported(nb_dir: Path):
    path = nb_dir / "instructor" / "10-try.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nbformat.write(nb, path)
    (nb_dir / "99-stray.ipynb").write_text("{}")
    messages = [p.message for p in notebook_files.check(nb_dir)]
    assert any("stored with outputs" in m for m in messages)
    assert any("without an instructor source" in m for m in messages)


# ---- reset ----------------------------------------------------------------------------------------
def test_reset_restores_a_broken_notebook_and_keeps_a_timestamped_backup(nb_dir: Path):
    broken = nb_dir / "10-try.ipynb"
    pristine = broken.read_text(encoding="utf-8")
    broken.write_text('{"cells": [ oops')
    results = notebook_files.reset(["10-try"], notebooks_dir=nb_dir, now=NOW)
    assert [(r.name, r.action, r.source) for r in results] == [
        ("10-try.ipynb", "restored", "notebooks/instructor")]
    assert broken.read_text(encoding="utf-8") == pristine
    backup = nb_dir / ".backups" / "10-try-20260305-143000.ipynb"
    assert results[0].backup == backup and backup.read_text() == '{"cells": [ oops'


def test_reset_all_leaves_pristine_notebooks_alone_and_recreates_deleted_ones(nb_dir: Path):
    (nb_dir / "10-try.ipynb").unlink()
    assert [r.action for r in notebook_files.reset(None, notebooks_dir=nb_dir, now=NOW)] == ["created"]
    assert [r.action for r in notebook_files.reset(None, notebooks_dir=nb_dir, now=NOW)] == ["unchanged"]
    assert not (nb_dir / ".backups").exists()


def test_a_second_reset_in_the_same_second_keeps_both_backups(nb_dir: Path):
    for text in ("first", "second"):
        (nb_dir / "10-try.ipynb").write_text(text)
        notebook_files.reset(["10-try.ipynb"], notebooks_dir=nb_dir, now=NOW)
    backups = sorted(p.name for p in (nb_dir / ".backups").iterdir())
    assert backups == ["10-try-20260305-143000-2.ipynb", "10-try-20260305-143000.ipynb"]


def test_dry_run_changes_nothing(nb_dir: Path):
    (nb_dir / "10-try.ipynb").write_text("broken")
    results = notebook_files.reset(["10-try"], notebooks_dir=nb_dir, dry_run=True)
    assert results[0].action == "restored"
    assert (nb_dir / "10-try.ipynb").read_text() == "broken"
    assert not (nb_dir / ".backups").exists()


def test_unknown_notebook_is_an_error_that_lists_the_known_ones(nb_dir: Path):
    with pytest.raises(notebook_files.NotebookResetError, match=r"99-nope\.ipynb.*10-try\.ipynb"):
        notebook_files.reset(["99-nope"], notebooks_dir=nb_dir)


def test_cli_notebooks_reset_dry_run_prints_a_table(capsys):
    from labkit.cli import main

    assert main(["notebooks", "reset", "--dry-run", "00-setup"]) == 0
    out = capsys.readouterr().out
    assert "00-setup.ipynb" in out and "dry run" in out


def test_cli_notebooks_check_passes_on_the_committed_notebooks(capsys):
    from labkit.cli import main

    assert main(["notebooks", "check"]) == 0
    assert capsys.readouterr().out.startswith("OK")


# ---- the notebooks themselves -------------------------------------------------------------------------
def _edition(name: str, edition: str):
    folder = REPO_DIR / "notebooks" / ("instructor" if edition == "instructor" else "")
    return nbformat.read(folder / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_conventions(name: str, edition: str):
    nb = _edition(name, edition)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "stored without outputs"
    assert nb.cells[0].cell_type == "markdown" and "목표" in nb.cells[0].source
    first = next(c.source for c in code if "labkit.connect()" in c.source)
    assert code.index(next(c for c in code if c.source == first)) <= 1
    if name != "00-setup":
        assert "lab.up(" in first, "every notebook starts (its step of) the lab (idempotent)"
    # The steps end with a checkpoint; only the exercises (연습 문제) may come after it.
    last_check = max((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                      and "checks.assert_ok(results)" in c.source), default=None)
    assert last_check is not None, "ends with a checkpoint"
    later_code = [i for i, c in enumerate(nb.cells) if i > last_check and c.cell_type == "code"]
    exercises = next((i for i, c in enumerate(nb.cells) if i > last_check
                      and c.cell_type == "markdown" and "연습 문제" in c.source), None)
    assert not later_code or (exercises is not None and exercises < later_code[0]), (
        "after the checkpoint only the exercises (## ✍️ 연습 문제) may have code")
    sources = [c.source for c in code]
    widget_cells = [i for i, src in enumerate(sources) if "widgets." in src]
    for i in widget_cells:
        assert sources[i].startswith("# NBVAL_IGNORE_OUTPUT"), "widget cells ignore their output"
        assert i + 1 < len(sources) and WIDGET_TWIN in sources[i + 1], (
            f"a widget cell needs a cell right after it marked {WIDGET_TWIN!r} that calls the "
            "same function without the widget")
    assert not any("os.environ" in src for src in sources), "the mode comes only from LABKIT_MODE"


#: The exercises (연습 문제) of each notebook: the check each one ends with.
EXERCISES = {
    "02-saga": ("saga_step_added", "compensation_plan", "handler_idempotent"),
    "03-cqrs": ("orders_per_user_view", "top_products_view", "read_your_writes"),
    "04-event-sourcing": ("upcaster_applied", "time_travel", "no_lost_updates"),
}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_each_exercise_has_a_solution_region_and_is_followed_by_its_check(name: str):
    instructor = notebook_files.read_instructor(name)
    student = nbformat.read(REPO_DIR / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c.source for c in instructor.cells if c.cell_type == "code"]
    for check in EXERCISES[name]:
        at = next(i for i, src in enumerate(code) if f"exercises.{check}(" in src)
        assert "### BEGIN SOLUTION" in "\n".join(code[max(0, at - 2):at]) or check in (
            "handler_idempotent",), f"{name}: no solution right before the check {check}"
        assert any(f"exercises.{check}(" in c.source for c in student.cells)
    assert student_sections(student) == student_sections(instructor)


def student_sections(nb) -> list[str]:
    return [ln for c in nb.cells if c.cell_type == "markdown"
            for ln in c.source.splitlines() if ln.startswith("### 연습")]


# ---- diagrams readable at 1024x768 -----------------------------------------------------------------
#: The measure: nodes and edges per mermaid diagram. Mermaid scales a diagram down to the width
#: of the output area (~600 px at 1024x768 with the file browser open); past about 12 nodes or
#: 14 edges its labels fall under 12 px and its edges start to cross.
MAX_NODES = 12
MAX_EDGES = 14
#: Side by side in a left-to-right diagram: more boxes than this in one row and mermaid shrinks
#: the labels under 12 px at 1024x768 (seen with notebook-look); draw a longer chain top-down.
MAX_LR_CHAIN = 5


def test_mermaid_measure_counts_nodes_and_edges_in_chains_and_fans():
    nodes, edges = mermaid.measure(
        "graph LR\n  A[a<br/>b] --> B & C\n  B -->|x| D((d)) -.-> E{e}\n  style A fill:#fff\n"
        "  subgraph \"s\"\n  F --> G\n  end")
    assert (len(nodes), edges) == (7, 5)
    assert mermaid.longest_chain("graph LR\n  A --> B --> C\n  C --> D\n  A --> D") == 4
    assert mermaid.direction("flowchart TD\n A-->B") == "TD"


@pytest.mark.parametrize("name", NAMES)
def test_each_mermaid_diagram_is_small_enough_to_read_at_1024x768(name: str):
    nb = notebook_files.read_instructor(name)
    diagrams = [d for c in nb.cells if c.cell_type == "markdown" for d in mermaid.blocks(c.source)]
    for i, source in enumerate(diagrams, 1):
        nodes, edges = mermaid.measure(source)
        assert len(nodes) <= MAX_NODES and edges <= MAX_EDGES, (
            f"{name} diagram {i}: {len(nodes)} nodes, {edges} edges (at most {MAX_NODES} nodes "
            f"and {MAX_EDGES} edges per diagram): split it")
        if mermaid.direction(source) in ("LR", "RL"):
            chain = mermaid.longest_chain(source)
            assert chain <= MAX_LR_CHAIN, (
                f"{name} diagram {i}: {chain} boxes side by side in a left-to-right diagram (at "
                f"most {MAX_LR_CHAIN}): draw it top-down (graph TB) or split it")
