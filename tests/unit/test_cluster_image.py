"""labkit.ops.image (docker build + kind load) and the KubernetesApi seam, without docker or a cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ecommerce.config import REPO_DIR
from labkit.cli import main as cli_main
from labkit.ops import image
from labkit.runtime.kube_api import KubernetesApi


class Runner:
    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.cmds: list[list[str]] = []
        self.fail = fail or {}

    def __call__(self, cmd, **kw: Any) -> subprocess.CompletedProcess:
        self.cmds.append(cmd)
        err = self.fail.get(cmd[0])
        return subprocess.CompletedProcess(cmd, 1 if err else 0, stderr=err or "")


def which_all(tool: str) -> str:
    return f"/usr/bin/{tool}"


def test_build_and_load_into_kind():
    run = Runner()
    tag = image.build(kind_cluster="labkit", runner=run, which=which_all, echo=lambda s: None)
    assert tag == image.IMAGE == "labkit:0.1.0"
    assert run.cmds == [
        ["docker", "build", "--tag", image.IMAGE, "--file", str(REPO_DIR / "Dockerfile"),
         str(REPO_DIR)],
        ["kind", "load", "docker-image", image.IMAGE, "--name", "labkit"],
    ]


def test_missing_docker_says_so_clearly():
    with pytest.raises(image.ImageError) as err:
        image.build(runner=Runner(), which=lambda t: None)
    assert str(err.value) == image.DOCKER_MISSING
    assert "docker is not installed" in str(err.value) and "LABKIT_MODE=local" in str(err.value)


def test_missing_kind_is_checked_before_building():
    run = Runner()
    with pytest.raises(image.ImageError, match="kind is not installed"):
        image.build(kind_cluster="labkit", runner=run,
                    which=lambda t: None if t == "kind" else which_all(t))
    assert run.cmds == []


def test_a_stopped_docker_daemon_and_a_missing_kind_cluster():
    run = Runner({"docker": "ERROR: Cannot connect to the Docker daemon at "
                            "unix:///var/run/docker.sock. Is the docker daemon running?"})
    with pytest.raises(image.ImageError) as err:
        image.build(runner=run, which=which_all, echo=lambda s: None)
    assert str(err.value) == image.DAEMON_DOWN
    run = Runner({"kind": 'ERROR: no nodes found for cluster "labkit"'})
    with pytest.raises(image.ImageError, match="kind has no cluster named 'labkit'"):
        image.build(kind_cluster="labkit", runner=run, which=which_all, echo=lambda s: None)


def test_other_failures_quote_the_last_line():
    assert image.explain_failure(["docker", "build"], "step 3\nno space left on device") == \
        "`docker build` failed: no space left on device"


def test_dry_run_prints_the_commands(capsys):
    assert cli_main(["image", "build", "--kind", "lab", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"docker build --tag {image.IMAGE}")
    assert out[1] == f"kind load docker-image {image.IMAGE} --name lab"


def test_main_reports_errors_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(image.shutil, "which", lambda t: None)
    assert cli_main(["image", "build"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {image.DOCKER_MISSING}"


def test_dockerignore_keeps_the_build_context_small():
    lines = (REPO_DIR / ".dockerignore").read_text().splitlines()
    assert "*" in lines and "!ecommerce/" in lines and "!pyproject.toml" in lines
    # the image is the system under study alone: the workbook helper stays out
    assert not any(line.startswith("!labkit") for line in lines)


# --- KubernetesApi: what it sends to the dynamic client -----------------------------------------

class FakeResource:
    def __init__(self, kind: str, namespaced: bool) -> None:
        self.kind, self.namespaced = kind, namespaced
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def delete(self, **kw: Any) -> None:
        self.calls.append(("delete", kw))


class Result:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data


class FakeDynamic:
    def __init__(self) -> None:
        self.resources_by_kind = {"Deployment": FakeResource("Deployment", True),
                                  "Namespace": FakeResource("Namespace", False)}
        self.applied: list[dict[str, Any]] = []
        self.resources = self

    def get(self, api_version: str, kind: str) -> FakeResource:
        return self.resources_by_kind[kind]

    def server_side_apply(self, resource: FakeResource, **kw: Any) -> Result:
        self.applied.append({"kind": resource.kind, **kw})
        return Result(kw["body"])


def api_with(dyn: FakeDynamic) -> KubernetesApi:
    api = KubernetesApi(api_client=None, context_name="test")
    api._dyn = dyn
    return api


def test_apply_is_server_side_with_labkit_and_an_explicit_namespace():
    dyn = FakeDynamic()
    api = api_with(dyn)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    api.apply(dep, namespace="lab", field_manager="labkit")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}
    api.apply(ns, namespace=None, field_manager="labkit")
    assert dyn.applied[0] == {"kind": "Deployment", "body": dep, "name": "d", "namespace": "lab",
                              "field_manager": "labkit", "force_conflicts": True}
    assert "namespace" not in dyn.applied[1]


def test_delete_of_a_gone_object_returns_false():
    class Gone(Exception):
        status = 404

    dyn = FakeDynamic()
    res = dyn.resources_by_kind["Deployment"]

    def delete(**kw: Any) -> None:
        raise Gone()

    res.delete = delete  # type: ignore[method-assign]
    assert api_with(dyn).delete("apps/v1", "Deployment", "d", "lab") is False


def test_dockerfile_is_what_the_manifests_expect():
    text = (Path(REPO_DIR) / "Dockerfile").read_text()
    assert "USER 10001:10001" in text and "slim" in text and ":latest" not in text


PROBE = """
import importlib.abc, runpy, sys
BLOCK = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"{name} is not in the image (a lab/dev extra)")
sys.meta_path.insert(0, Blocker())
for module in sys.argv[2:]:
    runpy.run_module(module, run_name="labkit_image_probe", alter_sys=True)
print("ok")
"""


def test_every_entrypoint_runs_with_only_the_service_dependencies():
    """The image installs [project.dependencies] and the `ecommerce` package only: no entrypoint
    may import an extra, or the workbook helper `labkit`."""
    import sys
    import tomllib

    from ecommerce.services.registry import SERVICES, TASKS

    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    extras = [d for deps in project["optional-dependencies"].values() for d in deps]
    names = {d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
             .replace("-", "_") for d in extras}
    names |= {"koreanize_matplotlib", "kubernetes_validate", "labkit", "yaml"}  # pyyaml: import yaml
    modules = sorted({s.module for s in [*SERVICES.values(), *TASKS.values()]})
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(sorted(names)), *modules],
                          capture_output=True, text=True, timeout=120, cwd=REPO_DIR)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_containerd_image_store_import_failure_points_at_the_workaround():
    """kind#3795: `kind load docker-image` under Docker 29's containerd image store."""
    stderr = ('ERROR: failed to load image: command "docker exec --privileged -i '
              'labkit-worker ctr --namespace=k8s.io images import --all-platforms --digests '
              '--snapshotter=overlayfs -" failed with error: exit status 1\n'
              "Command Output: ctr: content digest sha256:44b2c602: not found")
    msg = image.explain_failure(["kind", "load", "docker-image", "labkit:0.1.0", "--name",
                                 "labkit"], stderr)
    assert "kind issue #3795" in msg
    assert "kind load image-archive labkit.tar --name labkit" in msg
    assert "docker save --platform" in msg and "labkit:0.1.0" in msg
