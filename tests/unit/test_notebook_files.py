"""`labkit notebooks reset`, and the notebooks' conventions (generated, no outputs, checkpoints)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from ecommerce.config import REPO_DIR
from labkit.workbook import notebook_files

PRISTINE = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}) + "\n"
NOW = datetime(2026, 3, 5, 14, 30, 0)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with two committed notebooks."""
    r = tmp_path / "repo"
    (r / "notebooks").mkdir(parents=True)
    for name in ("00-setup.ipynb", "03-cqrs.ipynb"):
        (r / "notebooks" / name).write_text(PRISTINE)
    git(r, "init", "-q")
    git(r, "add", "notebooks")
    git(r, "commit", "-q", "-m", "notebooks")
    return r


@needs_git
def test_reset_restores_a_broken_notebook_from_git_head_and_keeps_a_timestamped_backup(repo):
    nb_dir = repo / "notebooks"
    broken = nb_dir / "03-cqrs.ipynb"
    broken.write_text('{"cells": [ oops')
    results = notebook_files.reset(["03-cqrs"], notebooks_dir=nb_dir, repo=repo, now=NOW)
    assert [(r.name, r.action, r.source) for r in results] == [("03-cqrs.ipynb", "restored", "git HEAD")]
    assert broken.read_text() == PRISTINE
    backup = nb_dir / ".backups" / "03-cqrs-20260305-143000.ipynb"
    assert results[0].backup == backup
    assert backup.read_text() == '{"cells": [ oops'


@needs_git
def test_reset_all_leaves_pristine_notebooks_alone_and_recreates_deleted_ones(repo):
    nb_dir = repo / "notebooks"
    (nb_dir / "00-setup.ipynb").unlink()
    results = {r.name: r for r in notebook_files.reset(None, notebooks_dir=nb_dir, repo=repo, now=NOW)}
    assert results["00-setup.ipynb"].action == "created"
    assert results["00-setup.ipynb"].backup is None
    assert results["03-cqrs.ipynb"].action == "unchanged"
    assert (nb_dir / "00-setup.ipynb").read_text() == PRISTINE
    assert not (nb_dir / ".backups").exists()


@needs_git
def test_a_second_reset_in_the_same_second_keeps_both_backups(repo):
    nb_dir = repo / "notebooks"
    for text in ("first", "second"):
        (nb_dir / "03-cqrs.ipynb").write_text(text)
        notebook_files.reset(["03-cqrs.ipynb"], notebooks_dir=nb_dir, repo=repo, now=NOW)
    backups = sorted(p.name for p in (nb_dir / ".backups").iterdir())
    assert backups == ["03-cqrs-20260305-143000-2.ipynb", "03-cqrs-20260305-143000.ipynb"]


@needs_git
def test_dry_run_changes_nothing(repo):
    nb_dir = repo / "notebooks"
    (nb_dir / "03-cqrs.ipynb").write_text("broken")
    results = notebook_files.reset(["03-cqrs"], notebooks_dir=nb_dir, repo=repo, dry_run=True)
    assert results[0].action == "restored"
    assert (nb_dir / "03-cqrs.ipynb").read_text() == "broken"
    assert not (nb_dir / ".backups").exists()


@needs_git
def test_unknown_notebook_is_an_error_that_lists_the_known_ones(repo):
    with pytest.raises(notebook_files.NotebookResetError, match=r"99-nope\.ipynb.*00-setup\.ipynb"):
        notebook_files.reset(["99-nope"], notebooks_dir=repo / "notebooks", repo=repo)


def test_without_git_the_builder_provides_the_pristine_copy(tmp_path):
    repo = tmp_path / "unpacked"
    (repo / "tools").mkdir(parents=True)
    (repo / "tools" / "build_notebooks.py").write_text(
        "def render_all():\n    return {'00-setup.ipynb': " + repr(PRISTINE) + "}\n")
    nb_dir = repo / "notebooks"
    results = notebook_files.reset(None, notebooks_dir=nb_dir, repo=repo, now=NOW)
    assert [(r.name, r.action, r.source) for r in results] == [
        ("00-setup.ipynb", "created", "tools/build_notebooks.py")]
    assert (nb_dir / "00-setup.ipynb").read_text() == PRISTINE


def test_cli_notebooks_reset_dry_run_prints_a_table(capsys):
    from labkit.cli import main

    assert main(["notebooks", "reset", "--dry-run", "00-setup"]) == 0
    out = capsys.readouterr().out
    assert "00-setup.ipynb" in out and "dry run" in out


# ---- the notebooks themselves -------------------------------------------------------------------------
def _builder():
    path = REPO_DIR / "tools" / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("build_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MINE = ("00-setup.ipynb", "01-networking.ipynb", "03-cqrs.ipynb", "04-event-sourcing.ipynb",
        "06-cleanup.ipynb")


def test_committed_notebooks_are_what_the_builder_generates():
    rendered = _builder().render_all()
    assert set(MINE) <= set(rendered)
    for name, text in rendered.items():
        path = REPO_DIR / "notebooks" / name
        assert path.read_text(encoding="utf-8") == text, (
            f"{name} is out of date: run python tools/build_notebooks.py")


@pytest.mark.parametrize("name", MINE)
def test_notebook_conventions(name):
    nb = nbformat.read(REPO_DIR / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "stored without outputs"
    assert nb.cells[0].cell_type == "markdown" and "목표" in nb.cells[0].source
    first = next(c.source for c in code if "labkit.connect()" in c.source)
    assert code.index(next(c for c in code if c.source == first)) <= 1
    if name != "00-setup.ipynb":
        assert "lab.up()" in first, "every notebook starts the lab (idempotent)"
    assert "checks.assert_ok(results)" in code[-1].source or any(
        "checks.assert_ok(results)" in c.source for c in code[-2:]), "ends with a checkpoint"
    sources = [c.source for c in code]
    widget_cells = [i for i, src in enumerate(sources) if "widgets." in src]
    for i in widget_cells:
        assert sources[i].startswith("# NBVAL_IGNORE_OUTPUT"), "widget cells ignore their output"
        assert i + 1 < len(sources) and "쌍둥이" in sources[i + 1], (
            "a widget cell needs a plain twin cell right after it calling the same function")
    assert not any("os.environ" in src for src in sources), "the mode comes only from LABKIT_MODE"
