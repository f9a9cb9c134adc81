"""Load the lab's manifests (`manifests/<step>/`) and order them into an apply plan.

Pure and fast: PyYAML only, no Kubernetes client. The local runtime reads the container
commands and environment variable names from here (`container_specs()`), the cluster runtime
applies `plan(load_step(...))`, and `labkit.ops.validate` checks the same objects.

A step is a folder with a `kustomization.yaml` whose `resources:` list names its files in
order, so `kubectl apply -k manifests/<step>` and labkit apply exactly the same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecommerce import __version__
from ecommerce.config import DEFAULT_NAMESPACE, REPO_DIR

MANIFESTS_DIR = REPO_DIR / "manifests"
#: The image every labkit container in manifests/ runs (imagePullPolicy: IfNotPresent); built
#: from the repo's Dockerfile by `labkit image build`. Its tag is the package version.
IMAGE = f"labkit:{__version__}"
#: The lab steps, in the order they are applied.
STEPS = ("00-base", "01-networking", "02-saga", "03-cqrs", "04-event-sourcing")
#: The namespace the course's load-tester runs in (not renamed with the lab namespace).
TESTING_NAMESPACE = "testing"

#: Labels every object the lab applies carries; cleanup selects on the first one.
PART_OF = "app.kubernetes.io/part-of"
PART_OF_VALUE = "labkit"
LAB_SELECTOR = f"{PART_OF}={PART_OF_VALUE}"
NAME_LABEL = "app.kubernetes.io/name"
STEP_LABEL = "labkit.io/step"
#: The annotation on everything labkit creates (each step's kustomization.yaml sets it as a
#: commonAnnotation, so `kubectl apply -k` sets it too). `labkit down` deletes only objects that
#: carry it, and `labkit up` never takes over a namespace that exists without it.
CREATED_BY = "labkit.io/created-by"
CREATED_BY_VALUE = "labkit"

#: Apply order by kind (Helm's install order, CRDs right after namespaces). Kinds that need a
#: CRD (Gateway API) come after every built-in kind; unknown kinds go last of all.
KIND_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
    "Service",
    "StatefulSet",
    "Deployment",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
)
_KIND_RANK = {k: i for i, k in enumerate(KIND_ORDER)}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
     "StorageClass", "PersistentVolume", "IngressClass", "GatewayClass"}
)


class ManifestError(ValueError):
    """A step folder or file that cannot be loaded."""


def manifests_dir(root: str | Path | None = None) -> Path:
    return Path(root) if root is not None else MANIFESTS_DIR


def step_dir(step: str | Path, root: str | Path | None = None) -> Path:
    p = Path(step)
    if p.is_dir():
        return p
    d = manifests_dir(root) / str(step)
    if not d.is_dir():
        raise ManifestError(f"no manifest step {step!r} (expected a folder {d}); "
                            f"steps: {', '.join(STEPS)}")
    return d


def kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise ManifestError(f"{directory} has no kustomization.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
        raise ManifestError(f"{path} must list its files under `resources:`")
    return data


#: PyYAML's safe loader, in C when libyaml is there (10x faster; same safe semantics).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_cache: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def load_file(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one file (parsed once per file version; callers get copies)."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if cache_key not in _cache:
        try:
            docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_SafeLoader))
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
        out = []
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise ManifestError(f"{path}: every document must be an object with kind and "
                                    "apiVersion")
            out.append(doc)
        _cache[cache_key] = out
    return copy.deepcopy(_cache[cache_key])


def load_step(step: str | Path, root: str | Path | None = None) -> list[dict[str, Any]]:
    """The objects of one step, in the order its kustomization.yaml lists the files."""
    d = step_dir(step, root)
    objects: list[dict[str, Any]] = []
    for name in kustomization(d)["resources"]:
        path = d / str(name)
        if not path.is_file():
            raise ManifestError(f"{d / 'kustomization.yaml'} lists {name}, which does not exist")
        objects.extend(load_file(path))
    annotations = kustomization(d).get("commonAnnotations") or {}
    if annotations:
        for obj in objects:
            add_annotations(obj, annotations)
    return objects


def add_annotations(obj: dict[str, Any], annotations: Mapping[str, str]) -> dict[str, Any]:
    """Set `annotations` where kustomize's commonAnnotations sets them: the object's metadata
    and its pod template's (a CronJob's job template too)."""
    targets = [obj.setdefault("metadata", {})]
    spec = obj.get("spec") or {}
    if obj.get("kind") in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
        targets.append((spec.get("template") or {}).setdefault("metadata", {}))
    elif obj.get("kind") == "CronJob":
        job = spec.get("jobTemplate") or {}
        targets.append(job.setdefault("metadata", {}))
        targets.append(((job.get("spec") or {}).get("template") or {}).setdefault("metadata", {}))
    for meta in targets:
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return obj


def created_by_labkit(obj: Mapping[str, Any]) -> bool:
    """Whether a live object carries labkit's created-by annotation."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CREATED_BY) == CREATED_BY_VALUE


def load_all(root: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every step's objects, keyed by step name, in apply order."""
    return {step: load_step(step, root) for step in STEPS}


def kind_rank(kind: str) -> int:
    return _KIND_RANK.get(kind, len(KIND_ORDER))


def plan(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Objects in a safe apply order: by kind rank, stable within a kind.

    Namespaces (and CRDs, should a step ever ship one) come before everything that lives in
    them; kinds served by a CRD (Gateway, HTTPRoute) come after the built-in kinds, so a
    missing CRD never leaves the built-in part of a step half applied.
    """
    objs = [dict(o) for o in objects]
    return [o for _, o in sorted(enumerate(objs), key=lambda p: (kind_rank(p[1]["kind"]), p[0]))]


def key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): identity of an object."""
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta.get("name") or "")


def describe(obj: Mapping[str, Any]) -> str:
    """`Deployment ecommerce-microservices/order-service`."""
    _, kind, ns, name = key(obj)
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def retarget(objects: Iterable[Mapping[str, Any]], namespace: str,
             default: str = DEFAULT_NAMESPACE) -> list[dict[str, Any]]:
    """Copies of `objects` moved from the default lab namespace to `namespace`.

    Every string that is exactly the default namespace is a reference to it (metadata,
    RoleBinding subjects, NetworkPolicy namespace selectors), so all of them are replaced.
    The `testing` namespace of the load-tester stays where it is.
    """
    if namespace == default:
        return [copy.deepcopy(dict(o)) for o in objects]

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return namespace if value == default else value

    return [walk(dict(o)) for o in objects]


# --- pod templates and containers -------------------------------------------------------------

def pod_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload object, else None."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
        return spec.get("template")
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    return None


@dataclass(frozen=True)
class EnvVar:
    name: str
    #: The literal value, or None when it comes from a Secret / ConfigMap / field reference.
    value: str | None = None
    #: `secret:<name>/<key>`, `configmap:<name>/<key>` or `field:<path>` for references.
    source: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """What one container of a workload runs, as the manifests say."""

    workload: str
    kind: str
    step: str
    namespace: str
    container: str
    image: str
    command: list[str]
    env: dict[str, EnvVar] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(self.env)

    @property
    def literal_env(self) -> dict[str, str]:
        """The variables with a literal value (URLs, ports, flags)."""
        return {k: v.value for k, v in self.env.items() if v.value is not None}

    @property
    def module(self) -> str | None:
        """`ecommerce.services.order` for `python -m ecommerce.services.order ...`."""
        c = self.command
        if len(c) >= 3 and c[0] in ("python", "python3") and c[1] == "-m":
            return c[2]
        return None

    @property
    def args(self) -> list[str]:
        return self.command[3:] if self.module else []


def env_vars(container: Mapping[str, Any]) -> dict[str, EnvVar]:
    out: dict[str, EnvVar] = {}
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            out[name] = EnvVar(name, str(item["value"]))
            continue
        ref = item.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            out[name] = EnvVar(name, None, f"secret:{r.get('name')}/{r.get('key')}")
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            out[name] = EnvVar(name, None, f"configmap:{r.get('name')}/{r.get('key')}")
        elif "fieldRef" in ref:
            out[name] = EnvVar(name, None, f"field:{ref['fieldRef'].get('fieldPath')}")
        else:
            out[name] = EnvVar(name, None, "unknown")
    return out


def container_specs(objects: Iterable[Mapping[str, Any]] | None = None,
                    root: str | Path | None = None) -> dict[str, ContainerSpec]:
    """Every Deployment / StatefulSet / Job / CronJob container, keyed by workload name.

    A workload with several containers is keyed `<workload>/<container>` per container.
    Without `objects`, reads every step under `root` (default: the repo's manifests/).
    """
    if objects is None:
        objects = [o for objs in load_all(root).values() for o in objs]
    out: dict[str, ContainerSpec] = {}
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        meta = obj.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        containers = (template.get("spec") or {}).get("containers") or []
        for c in containers:
            name = meta["name"] if len(containers) == 1 else f"{meta['name']}/{c['name']}"
            command = [str(x) for x in (c.get("command") or [])] + [str(x) for x in
                                                                     (c.get("args") or [])]
            out[name] = ContainerSpec(
                workload=meta["name"],
                kind=obj["kind"],
                step=labels.get(STEP_LABEL, ""),
                namespace=meta.get("namespace") or "",
                container=c["name"],
                image=c.get("image", ""),
                command=command,
                env=env_vars(c),
                ports={p.get("name") or str(p["containerPort"]): int(p["containerPort"])
                       for p in c.get("ports") or []},
                labels=dict((template.get("metadata") or {}).get("labels") or {}),
            )
    return out


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); {} matches all."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        # A Service's plain map selector.
        return all(labels.get(k) == v for k, v in selector.items())
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in values:
            return False
        if op == "NotIn" and k in labels and labels[k] in values:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def label_selector_string(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
