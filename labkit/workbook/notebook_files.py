"""Restore the workbook's notebooks to their pristine state (`labkit notebooks reset`).

A student who broke a notebook gets the original back; the broken one is kept as a timestamped
backup under `notebooks/.backups/` (a dot folder: JupyterLab's file browser and pytest skip it).

The pristine copy is the one committed at git `HEAD`; outside a git checkout it is regenerated
by `tools/build_notebooks.py`, which is where the notebooks come from.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ecommerce.config import REPO_DIR

NOTEBOOKS_DIR = REPO_DIR / "notebooks"
BACKUP_DIRNAME = ".backups"


class NotebookResetError(RuntimeError):
    """No pristine copy of a notebook could be found; the message says where we looked."""


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


def _git_pristine(repo: Path, name: str) -> bytes | None:
    if shutil.which("git") is None or not (repo / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:notebooks/{name}"],
                          capture_output=True, timeout=30)
    return done.stdout if done.returncode == 0 else None


def _git_names(repo: Path) -> list[str]:
    if shutil.which("git") is None or not (repo / ".git").exists():
        return []
    done = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", "HEAD", "notebooks/"],
                          capture_output=True, text=True, timeout=30)
    return sorted(Path(p).name for p in done.stdout.split() if p.endswith(".ipynb"))


def _built(repo: Path) -> dict[str, bytes]:
    builder = repo / "tools" / "build_notebooks.py"
    if not builder.exists():
        return {}
    import importlib.util

    spec = importlib.util.spec_from_file_location("_labkit_build_notebooks", builder)
    if spec is None or spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: text.encode() for name, text in module.render_all().items()}


def pristine(names: list[str] | None = None, repo: Path = REPO_DIR) -> dict[str, tuple[bytes, str]]:
    """{notebook file name: (pristine bytes, where it came from)}."""
    wanted = names or _git_names(repo)
    built: dict[str, bytes] | None = None
    out: dict[str, tuple[bytes, str]] = {}
    for name in wanted or []:
        data = _git_pristine(repo, name)
        if data is not None:
            out[name] = (data, "git HEAD")
            continue
        if built is None:
            built = _built(repo)
        if name in built:
            out[name] = (built[name], "tools/build_notebooks.py")
    if not wanted:  # not a git checkout: everything the builder makes
        built = _built(repo) if built is None else built
        out = {n: (b, "tools/build_notebooks.py") for n, b in built.items()}
    return out


def _normalise(name: str) -> str:
    name = Path(name).name
    return name if name.endswith(".ipynb") else name + ".ipynb"


def reset(names: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR,
          repo: Path = REPO_DIR, dry_run: bool = False,
          now: datetime | None = None) -> list[ResetResult]:
    """Restore `names` (default: every workbook notebook) and back up what is replaced.

    A notebook that already equals its pristine copy is left alone ("unchanged").
    """
    wanted = [_normalise(n) for n in names] if names else None
    sources = pristine(wanted, repo)
    if wanted:
        missing = [n for n in wanted if n not in sources]
        if missing:
            raise NotebookResetError(
                f"no pristine copy of {', '.join(missing)} (looked in git HEAD:notebooks/ and "
                f"tools/build_notebooks.py); known notebooks: {', '.join(sorted(pristine(None, repo)))}")
    if not sources:
        raise NotebookResetError("no pristine notebooks found: not a git checkout and no "
                                 "tools/build_notebooks.py")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    backup_dir = notebooks_dir / BACKUP_DIRNAME
    results = []
    for name, (data, source) in sorted(sources.items()):
        target = notebooks_dir / name
        if target.exists() and target.read_bytes() == data:
            results.append(ResetResult(name, "unchanged", None, source))
            continue
        backup = None
        if target.exists():
            backup = backup_dir / f"{target.stem}-{stamp}{target.suffix}"
            n = 1
            while backup.exists():
                n += 1
                backup = backup_dir / f"{target.stem}-{stamp}-{n}{target.suffix}"
        action = "restored" if target.exists() else "created"
        if not dry_run:
            if backup is not None:
                backup_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, backup)
            notebooks_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        results.append(ResetResult(name, action, backup, source))
    return results
