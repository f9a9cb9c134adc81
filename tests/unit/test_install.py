"""The classroom install: `make lab` takes what a student needs, `make test` the rest, and
both take the versions in constraints.txt (what CI tested)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, list[tuple[Version, str]]]:
    """name -> [(version, marker)] from constraints.txt."""
    pins: dict[str, list[tuple[Version, str]]] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins.setdefault(req.name.lower().replace("_", "-"), []).append(
            (Version(spec.version), str(req.marker or "")))
    return pins


def _requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in PYPROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_every_dependency_is_pinned_in_the_constraints_within_its_range() -> None:
    pins = _pins()
    for req in _requirements():
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints.txt: run `make lock`"
        for version, _ in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"constraints.txt pins {name}=={version}, outside pyproject's {req.specifier}: "
                "run `make lock`")


def test_the_image_installs_the_services_only() -> None:
    base = {Requirement(r).name.lower() for r in PYPROJECT["dependencies"]}
    student = {"jupyterlab", "pandas", "matplotlib", "ipywidgets", "pyyaml", "psutil"}
    assert not base & (student | {"kubernetes", "pytest"})
    extras = PYPROJECT["optional-dependencies"]
    assert {Requirement(r).name.lower() for r in extras["lab"]} >= student
    assert [Requirement(r).name for r in extras["cluster"]] == ["kubernetes"]
    assert "pytest" in {Requirement(r).name for r in extras["dev"]}


def _make_n(*args: str, **env: str) -> str:
    done = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, check=True)
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_installs_the_student_extras_and_make_test_the_rest(tmp_path: Path) -> None:
    fresh = {"VENV": str(tmp_path / "venv")}  # as on a machine with no .venv yet
    lab = _make_n("install-lab", f"VENV={fresh['VENV']}", LABKIT_MODE="local")
    assert re.search(r"-c constraints\.txt -e '\.\[lab\]'", lab), lab
    cluster = _make_n("install-lab", f"VENV={fresh['VENV']}", LABKIT_MODE="cluster")
    assert "-e '.[lab,cluster]'" in cluster
    test = _make_n("install", f"VENV={fresh['VENV']}")
    assert "-c constraints.txt -e '.[lab,cluster,dev]'" in test
    assert "pip install --disable-pip-version-check --progress-bar on uv" in test
    pip_only = _make_n("install-lab", f"VENV={fresh['VENV']}", "INSTALLER=pip")
    assert "if [ \"pip\" = uv ]" in pip_only
