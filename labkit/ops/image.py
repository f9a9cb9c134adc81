"""Build the lab's container image: `docker build` (+ `kind load docker-image`).

`labkit image build [--kind CLUSTER] [--tag TAG]` calls `build()`. The tag is
`labkit.runtime.manifests.IMAGE`, the one every manifest uses.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ecommerce.config import REPO_DIR
from labkit.runtime.manifests import IMAGE

Runner = Callable[..., subprocess.CompletedProcess]


class ImageError(RuntimeError):
    """A build step that cannot run; the message says what to do."""


def _require(tool: str, which: Callable[[str], str | None], why: str) -> str:
    path = which(tool)
    if not path:
        raise ImageError(why)
    return path


DOCKER_MISSING = (
    "docker is not installed or not on PATH: install Docker (Docker Desktop, or docker engine "
    "on Linux) to build the cluster image; the lab's local mode (LABKIT_MODE=local) needs no image."
)
DAEMON_DOWN = (
    "docker is installed but its daemon is not running (or you may not use it): start Docker "
    "Desktop / `sudo systemctl start docker`, or add yourself to the `docker` group, then retry."
)
KIND_MISSING = (
    "kind is not installed or not on PATH: install it (https://kind.sigs.k8s.io) to load the image "
    "into a kind cluster, or drop --kind and load it into your cluster another way."
)


def build_commands(tag: str = IMAGE, kind_cluster: str | None = None,
                   context: Path = REPO_DIR) -> list[list[str]]:
    """The commands `build()` runs, in order (pure, for tests and --dry-run)."""
    cmds = [["docker", "build", "--tag", tag, "--file", str(context / "Dockerfile"), str(context)]]
    if kind_cluster:
        cmds.append(["kind", "load", "docker-image", tag, "--name", kind_cluster])
    return cmds


def explain_failure(cmd: Sequence[str], stderr: str) -> str:
    """One sentence for a failed docker/kind command, from its stderr."""
    text = stderr.strip()
    low = text.lower()
    if cmd[0] == "docker" and ("cannot connect to the docker daemon" in low
                               or ("permission denied" in low and "docker.sock" in low)
                               or "is the docker daemon running" in low):
        return DAEMON_DOWN
    if cmd[0] == "kind" and ("no nodes found" in low
                             or ("could not find" in low and "cluster" in low)):
        cluster = cmd[cmd.index("--name") + 1] if "--name" in cmd else "kind"
        return (f"kind has no cluster named {cluster!r}: create it with `kind create cluster "
                f"--config manifests/kind-config.yaml` or pass the name `kind get clusters` shows.")
    if cmd[0] == "kind" and "ctr" in low and "images import" in low and (
            "not found" in low or "content digest" in low):
        # kubernetes-sigs/kind#3795: Docker's containerd image store (the default from Docker 29
        # and on Docker Desktop) saves a multi-platform index whose other platforms were never
        # pulled, and the node's `ctr images import --all-platforms` fails on them.
        tag = cmd[3] if len(cmd) > 3 else "IMAGE"
        cluster = cmd[cmd.index("--name") + 1] if "--name" in cmd else "kind"
        return (f"kind could not import {tag} (Docker's containerd image store, kind issue #3795): "
                f"load a single-platform archive instead, `docker save --platform \"$(docker "
                f"image inspect -f '{{{{.Os}}}}/{{{{.Architecture}}}}' {tag})\" -o labkit.tar {tag} "
                "&& kind load "
                f"image-archive labkit.tar --name {cluster}`, or turn off \"Use containerd for "
                "pulling and storing images\" (Docker Desktop) / the containerd-snapshotter "
                "feature (Docker Engine) and build again.")
    last = text.splitlines()[-1] if text else "no error output"
    return f"`{' '.join(cmd)}` failed: {last}"


def build(tag: str = IMAGE, kind_cluster: str | None = None, *, context: Path = REPO_DIR,
          runner: Runner | None = None, which: Callable[[str], str | None] | None = None,
          echo: Callable[[str], None] = print) -> str:
    """Build the image (and load it into kind cluster `kind_cluster`); return the tag."""
    runner = runner or subprocess.run
    which = which or shutil.which
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile in {context}: run this from a labkit source checkout.")
    _require("docker", which, DOCKER_MISSING)
    if kind_cluster:
        _require("kind", which, KIND_MISSING)
    for cmd in build_commands(tag, kind_cluster, context):
        echo("$ " + " ".join(cmd))
        # docker's build progress goes to the terminal; stderr is captured to explain failures.
        proc = runner(cmd, stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise ImageError(explain_failure(cmd, proc.stderr or ""))
    if kind_cluster:
        echo(f"{tag} is loaded on every node of kind cluster {kind_cluster!r}.")
    else:
        echo(f"built {tag}. kind: `kind load docker-image {tag} --name <cluster>`; minikube: "
             f"`minikube image load {tag}`; EKS: push it to ECR and set the image in a kustomize "
             f"overlay.")
    return tag
