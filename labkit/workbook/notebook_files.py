"""The workbook's notebook files: instructor sources, the student edition, and resets.

    notebooks/instructor/NN-name.md      the source an instructor edits (MyST Markdown, paired
    notebooks/instructor/NN-name.ipynb   by jupytext with this notebook: the instructor edition,
                                         solutions and model answers included)
    notebooks/NN-name.ipynb              the student edition, generated from the instructor one

Editing in JupyterLab (jupytext installed) saves both files of a pair, so the edit shows up as a
readable diff of the `.md`. `labkit notebooks build` brings a pair back in sync (the newer file
wins, unless told which) and regenerates the student editions; `labkit notebooks check` (run by
`make lint`) fails when a pair or a student edition is out of date, or outputs are stored.

The student edition is the instructor edition with the solutions taken out, following nbgrader's
convention:

- in a code cell, the lines from `### BEGIN SOLUTION` to `### END SOLUTION` become a stub
  (a comment asking for the code, and `pass`), indented like the marker, so the cell still runs;
  put the student's starting point (e.g. `answer = None`) just above the region;
- a cell tagged `solution` (e.g. model answers to the retrospective questions) is left out;
- in markdown, `<!-- BEGIN SOLUTION -->` ... `<!-- END SOLUTION -->` becomes an invitation to
  write one's own answer.

`labkit notebooks reset NAME` gives a student back the pristine student edition, keeping the
broken one as a timestamped backup in `notebooks/.backups/` (a dot folder: JupyterLab's file
browser and pytest skip it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ecommerce.config import REPO_DIR

NOTEBOOKS_DIR = REPO_DIR / "notebooks"
INSTRUCTOR_DIRNAME = "instructor"
BACKUP_DIRNAME = ".backups"
TEXT_FORMAT = "md:myst"
PAIRED_FORMATS = "ipynb,md:myst"

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
MD_BEGIN_SOLUTION = "<!-- BEGIN SOLUTION -->"
MD_END_SOLUTION = "<!-- END SOLUTION -->"
SOLUTION_TAG = "solution"
CODE_STUB = ("# ✍️ 여기에 코드를 작성하세요 (YOUR CODE HERE)", "pass")
MARKDOWN_STUB = "*✍️ 여기에 여러분의 답을 적어 보세요.*"


class NotebookError(RuntimeError):
    """A notebook file is missing or malformed; the message says which and what to do."""


class NotebookResetError(NotebookError):
    """No pristine copy of a notebook could be found; the message says where we looked."""


# ---- the student edition ------------------------------------------------------------------------


def _strip_code(source: str, where: str) -> str:
    out: list[str] = []
    inside: str | None = None  # the indentation of the open region
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside is not None:
                raise NotebookError(f"{where}: {BEGIN_SOLUTION} inside another solution region")
            inside = line[: len(line) - len(line.lstrip())]
            out.extend(inside + stub for stub in CODE_STUB)
        elif marker == END_SOLUTION:
            if inside is None:
                raise NotebookError(f"{where}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise NotebookError(f"{where}: {BEGIN_SOLUTION} is never closed by {END_SOLUTION}")
    return "\n".join(out)


def _strip_markdown(source: str, where: str) -> str:
    pattern = re.compile(re.escape(MD_BEGIN_SOLUTION) + r".*?" + re.escape(MD_END_SOLUTION), re.S)
    stripped = pattern.sub(MARKDOWN_STUB, source)
    if MD_BEGIN_SOLUTION in stripped or MD_END_SOLUTION in stripped:
        raise NotebookError(f"{where}: unbalanced {MD_BEGIN_SOLUTION} / {MD_END_SOLUTION}")
    return stripped


def has_solutions(nb: Any) -> bool:
    """Does this notebook hold anything the student edition takes out?"""
    for cell in nb.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            return True
        if BEGIN_SOLUTION in cell.source or MD_BEGIN_SOLUTION in cell.source:
            return True
    return False


def student_edition(instructor: Any, name: str = "notebook") -> Any:
    """The instructor notebook without its solutions (a new notebook; the input is unchanged)."""
    import copy

    nb = copy.deepcopy(instructor)
    cells = []
    for i, cell in enumerate(nb.cells):
        where = f"{name} cell {i + 1}"
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = _strip_code(cell.source, where)
        elif cell.cell_type == "markdown":
            cell.source = _strip_markdown(cell.source, where)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("jupytext", None)  # students get a plain notebook, no pairing
    nb.metadata["labkit"] = {"edition": "student",
                             "source": f"notebooks/{INSTRUCTOR_DIRNAME}/{name}.md"}
    return nb


# ---- reading and writing ------------------------------------------------------------------------


def _clean(nb: Any) -> Any:
    """Stored without outputs or execution counts."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def _dumps(nb: Any) -> str:
    import nbformat

    return nbformat.writes(_clean(nb)) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def instructor_dir(notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    return notebooks_dir / INSTRUCTOR_DIRNAME


def names(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """Notebook names (`00-setup`, ...): every instructor source, `.md` or `.ipynb`."""
    folder = instructor_dir(notebooks_dir)
    return sorted({p.stem for p in folder.glob("*.md")} | {p.stem for p in folder.glob("*.ipynb")})


def _cells_key(nb: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", [])))
            for c in nb.cells]


def read_instructor(name: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Any:
    """The instructor edition (from the .ipynb, else the .md)."""
    import jupytext
    import nbformat

    folder = instructor_dir(notebooks_dir)
    ipynb, md = folder / f"{name}.ipynb", folder / f"{name}.md"
    if ipynb.exists():
        return nbformat.read(ipynb, as_version=4)
    if md.exists():
        return jupytext.read(md, fmt=TEXT_FORMAT)
    raise NotebookError(f"no instructor source for {name!r} in {folder}; "
                        f"known: {', '.join(names(notebooks_dir)) or 'none'}")


# ---- check and build ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Problem]:
    """Every way the notebook files can be out of date (empty: all good)."""
    import jupytext
    import nbformat

    problems: list[Problem] = []
    all_names = names(notebooks_dir)
    if not all_names:
        return [Problem(str(instructor_dir(notebooks_dir)), "no instructor notebooks found")]
    folder = instructor_dir(notebooks_dir)
    for name in all_names:
        ipynb, md = folder / f"{name}.ipynb", folder / f"{name}.md"
        if not md.exists() or not ipynb.exists():
            missing = md if not md.exists() else ipynb
            problems.append(Problem(str(missing), "missing half of a jupytext pair: run "
                                                  "`labkit notebooks build`"))
            continue
        nb = nbformat.read(ipynb, as_version=4)
        if nb.metadata.get("jupytext", {}).get("formats") != PAIRED_FORMATS:
            problems.append(Problem(str(ipynb), f"not paired ({PAIRED_FORMATS}): run "
                                                "`labkit notebooks build`"))
        if _cells_key(jupytext.read(md, fmt=TEXT_FORMAT)) != _cells_key(nb):
            problems.append(Problem(
                str(md), f"out of sync with {ipynb.name}: run `labkit notebooks build` (the newer "
                         "file wins; add --from md or --from ipynb to choose)"))
        if any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells):
            problems.append(Problem(str(ipynb), "stored with outputs: run `labkit notebooks build`"))
        try:
            expected = _dumps(student_edition(nb, name))
        except NotebookError as exc:
            problems.append(Problem(str(md), str(exc)))
            continue
        student = notebooks_dir / f"{name}.ipynb"
        if not student.exists() or student.read_text(encoding="utf-8") != expected:
            problems.append(Problem(str(student), "student edition out of date: run "
                                                  "`labkit notebooks build`"))
    strays = sorted({p.stem for p in notebooks_dir.glob("*.ipynb")} - set(all_names))
    problems += [Problem(str(notebooks_dir / f"{s}.ipynb"), "a student notebook without an "
                         "instructor source: add notebooks/instructor/{s}.md or delete it")
                 for s in strays]
    return problems


@dataclass(frozen=True)
class BuildResult:
    name: str
    #: What happened to the pair: "md -> ipynb", "ipynb -> md", "in sync".
    pair: str
    student: str  # "written" or "unchanged"

    def as_dict(self) -> dict[str, str]:
        return {"notebook": self.name, "pair": self.pair, "student": self.student}


def _sync_pair(name: str, folder: Path, prefer: str | None) -> tuple[Any, str]:
    import jupytext
    import nbformat
    from jupytext.combine import combine_inputs_with_outputs

    ipynb, md = folder / f"{name}.ipynb", folder / f"{name}.md"
    if prefer is None:
        if not ipynb.exists():
            prefer = "md"
        elif not md.exists():
            prefer = "ipynb"
        else:
            prefer = "md" if md.stat().st_mtime > ipynb.stat().st_mtime else "ipynb"
    if prefer == "md":
        if not md.exists():
            raise NotebookError(f"{md} does not exist: use --from ipynb")
        source = jupytext.read(md, fmt=TEXT_FORMAT)
        nb = (combine_inputs_with_outputs(source, nbformat.read(ipynb, as_version=4), fmt=TEXT_FORMAT)
              if ipynb.exists() else source)
    elif prefer == "ipynb":
        if not ipynb.exists():
            raise NotebookError(f"{ipynb} does not exist: use --from md")
        nb = nbformat.read(ipynb, as_version=4)
    else:
        raise ValueError(f"prefer must be 'md', 'ipynb' or None; got {prefer!r}")
    nb.metadata.setdefault("jupytext", {})["formats"] = PAIRED_FORMATS
    nb.metadata["jupytext"].pop("text_representation", None)
    nb = _clean(nb)
    wrote_ipynb = _write_if_changed(ipynb, _dumps(nb))
    wrote_md = _write_if_changed(md, jupytext.writes(nb, fmt=TEXT_FORMAT))
    pair = "in sync"
    if wrote_ipynb or wrote_md:
        pair = "md -> ipynb" if prefer == "md" else "ipynb -> md"
    return nb, pair


def build(selected: Iterable[str] | None = None, prefer: str | None = None,
          notebooks_dir: Path = NOTEBOOKS_DIR) -> list[BuildResult]:
    """Sync each instructor pair, then write its student edition."""
    wanted = [_stem(n) for n in selected] if selected else names(notebooks_dir)
    known = set(names(notebooks_dir))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise NotebookError(f"no instructor source for {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
    results = []
    for name in wanted:
        nb, pair = _sync_pair(name, instructor_dir(notebooks_dir), prefer)
        wrote = _write_if_changed(notebooks_dir / f"{name}.ipynb",
                                  _dumps(student_edition(nb, name)))
        results.append(BuildResult(name, pair, "written" if wrote else "unchanged"))
    return results


# ---- reset --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetResult:
    name: str
    #: "restored" (file replaced, backup kept), "created" (was missing), "unchanged".
    action: str
    backup: Path | None
    source: str

    def as_dict(self) -> dict[str, object]:
        return {"notebook": self.name, "action": self.action,
                "backup": str(self.backup) if self.backup else None, "source": self.source}


def _stem(name: str) -> str:
    return Path(name).name.removesuffix(".ipynb").removesuffix(".md")


def reset(selected: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR,
          dry_run: bool = False, now: datetime | None = None) -> list[ResetResult]:
    """Restore the student notebooks `selected` (default: all) from the instructor sources,
    backing up what is replaced. A notebook equal to its pristine copy is left alone."""
    known = names(notebooks_dir)
    wanted = [_stem(n) for n in selected] if selected else known
    missing = [n for n in wanted if n not in known]
    if missing:
        raise NotebookResetError(
            f"no pristine copy of {', '.join(m + '.ipynb' for m in missing)} (looked in "
            f"{instructor_dir(notebooks_dir)}); known notebooks: "
            f"{', '.join(k + '.ipynb' for k in known) or 'none'}")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    backup_dir = notebooks_dir / BACKUP_DIRNAME
    source = f"notebooks/{INSTRUCTOR_DIRNAME}"
    results = []
    for name in wanted:
        data = _dumps(student_edition(read_instructor(name, notebooks_dir), name))
        target = notebooks_dir / f"{name}.ipynb"
        if target.exists() and target.read_text(encoding="utf-8") == data:
            results.append(ResetResult(target.name, "unchanged", None, source))
            continue
        backup = None
        if target.exists():
            backup = backup_dir / f"{name}-{stamp}.ipynb"
            n = 1
            while backup.exists():
                n += 1
                backup = backup_dir / f"{name}-{stamp}-{n}.ipynb"
        action = "restored" if target.exists() else "created"
        if not dry_run:
            if backup is not None:
                backup_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, backup)
            _write_if_changed(target, data)
        results.append(ResetResult(target.name, action, backup, source))
    return results
