"""`labkit validate`: strict schemas plus consistency checks for manifests/, without a cluster.

- Every object validates with kubernetes-validate (its public `validate`) in strict mode (no
  unknown fields) against a pinned Kubernetes version. Gateway and HTTPRoute, which it has no
  schema for, validate against the Gateway API CRDs vendored in labkit/ops/schemas/
  (`labkit.ops.crd_schema`); the kustomization files and the kind cluster config are checked
  here. Any other kind is a problem, so nothing passes unchecked.
- Consistency with ecommerce/services/registry.py (the contract): every container command is a
  real entrypoint, every environment variable a process reads is set, every Service selector
  and port matches a pod template, routes and NetworkPolicies match the real call paths.
- The course's requirements: Secret for credentials, pinned images, probes, resources,
  non-root read-only containers, least-privilege RBAC, the Job/CronJob settings.

`python -m labkit.ops.validate` prints the problems and exits 1 if there are any.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecommerce.config import DEFAULT_NAMESPACE, REPO_DIR
from ecommerce.services.registry import (
    CONTAINER_PORT,
    SERVICE_PORT,
    SERVICES,
    TASKS,
    ServiceSpec,
)
from labkit.ops import crd_schema
from labkit.runtime import manifests as m
from labkit.runtime.manifests import IMAGE
from labkit.runtime.routes import COURSE_ROUTES

DEFAULT_K8S_VERSION = "1.33.0"
LAB_NAMESPACES = (DEFAULT_NAMESPACE, m.TESTING_NAMESPACE)
#: Entrypoints that run in more than one way (Job / CronJob vs --follow Deployment).
ARG_VARIANTS: dict[str, set[tuple[str, ...]]] = {
    "saga-orchestrator": {("run", "--follow"), ("run", "--pending")},
    "event-processor": {("--follow",), ()},
}
#: Who, outside the lab namespace's own pods, calls the HTTP services.
GATEWAY = "gateway"
#: The standard label on a Gateway's data-plane pods (Gateway API GEP-1762).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_NAME = "labkit-gateway"
#: Where in-namespace data planes find their control plane: (namespace, port) of Envoy Gateway's
#: xDS, NGINX Gateway Fabric's agent gRPC and istiod's xDS.
GATEWAY_CONTROL_PLANES = {"envoy-gateway-system": 18000, "nginx-gateway": 443, "istio-system": 15012}
LOAD_TESTER = "load-tester"
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/component",
                   "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
                   "app.kubernetes.io/version", m.STEP_LABEL)
POD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/component", m.PART_OF, m.STEP_LABEL)
STORE_PORTS = {"events": ("postgres", 5432), "read": ("redis", 6379)}


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    check: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Item:
    """One object with where it came from."""

    step: str
    path: Path
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        try:
            rel = self.path.relative_to(REPO_DIR)
        except ValueError:
            rel = self.path
        return f"{rel}: {m.describe(self.obj)}"

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "")

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "")

    @property
    def namespace(self) -> str:
        return (self.obj.get("metadata") or {}).get("namespace") or ""


def all_specs() -> dict[str, ServiceSpec]:
    return {**SERVICES, **TASKS}


# --- loading ------------------------------------------------------------------------------------

def load_items(root: Path | None = None) -> tuple[list[Item], list[Problem]]:
    root = m.manifests_dir(root)
    items: list[Item] = []
    problems: list[Problem] = []
    for step in m.STEPS:
        d = root / step
        try:
            kust = m.kustomization(d)
        except m.ManifestError as exc:
            problems.append(Problem(str(d), str(exc), "kustomization"))
            continue
        problems += check_kustomization(d, kust)
        for name in kust["resources"]:
            path = d / str(name)
            if not path.is_file():
                continue  # reported by check_kustomization
            try:
                objs = m.load_file(path)
            except m.ManifestError as exc:
                problems.append(Problem(str(path), str(exc), "yaml"))
                continue
            annotations = kust.get("commonAnnotations") or {}
            items += [Item(step, path, m.add_annotations(o, annotations)) for o in objs]
    return items, problems


def check_kustomization(d: Path, kust: Mapping[str, Any]) -> list[Problem]:
    where = f"{d.name}/kustomization.yaml"
    out = []
    if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
        out.append(Problem(where, "must be apiVersion kustomize.config.k8s.io/v1beta1, "
                                  "kind Kustomization", "kustomization"))
    extra = set(kust) - {"apiVersion", "kind", "resources", "commonAnnotations"}
    if kust.get("commonAnnotations") != {m.CREATED_BY: m.CREATED_BY_VALUE}:
        out.append(Problem(where, f"must set commonAnnotations {{{m.CREATED_BY}: "
                                  f"{m.CREATED_BY_VALUE}}} and nothing else: `labkit down` deletes "
                                  "only objects carrying it", "kustomization"))
    if extra:
        out.append(Problem(where, f"uses {', '.join(sorted(extra))}: labkit applies the listed files "
                                  "as they are, so kustomize transformers would make `kubectl apply -k` "
                                  "and labkit differ; put the change in the YAML", "kustomization"))
    listed = [str(r) for r in kust.get("resources") or []]
    files = sorted(p.name for p in d.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in listed:
        if name not in files:
            out.append(Problem(where, f"lists {name}, which does not exist", "kustomization"))
    for name in files:
        if name not in listed:
            out.append(Problem(where, f"does not list {name}: neither kubectl nor labkit would apply "
                                      "it", "kustomization"))
    if len(set(listed)) != len(listed):
        out.append(Problem(where, "lists a file twice", "kustomization"))
    return out


# --- schemas ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _strict_verdict(obj_json: str, k8s_version: str) -> tuple[str, str, str] | None:
    """kubernetes-validate's strict verdict on one object, given as JSON text so that it can be
    cached (the tests validate the same unchanged objects many times): None when it is valid,
    else (the schema's Kubernetes version, the path, the message)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(json.loads(obj_json), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return exc.version, ".".join(str(p) for p in exc.path) or "(root)", exc.message
    return None


def check_schemas(items: Iterable[Item], k8s_version: str) -> list[Problem]:
    import kubernetes_validate

    out = []
    for it in items:
        if crd_schema.knows(it.obj.get("apiVersion", ""), it.kind):
            out += check_custom_kind(it)
            continue
        try:
            verdict = _strict_verdict(json.dumps(it.obj, sort_keys=True, default=str), k8s_version)
        except kubernetes_validate.SchemaNotFoundError:
            out.append(Problem(it.where, f"no schema for {it.obj.get('apiVersion')} {it.kind} in "
                                         f"Kubernetes {k8s_version} and no CRD in labkit/ops/schemas/: "
                                         "vendor its CRD there, an unknown kind must not pass silently",
                               "schema"))
            continue
        except Exception as exc:  # a version kubernetes-validate does not ship, a broken schema
            msg = getattr(exc, "message", None) or str(exc)
            out.append(Problem(it.where, f"could not be validated: {msg}", "schema"))
            continue
        if verdict is not None:
            version, path, message = verdict
            out.append(Problem(it.where, f"invalid against Kubernetes {version} (strict): "
                                         f"{path}: {message}", "schema"))
    return out


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _unknown(where: str, obj: Mapping[str, Any], allowed: set[str], path: str) -> list[Problem]:
    extra = sorted(set(obj) - allowed)
    return [Problem(where, f"{path}: unknown field(s) {', '.join(extra)}", "schema")] if extra else []


def check_custom_kind(it: Item) -> list[Problem]:
    """A Gateway API object: its CRD's schema (vendored, strict), the CRD's CEL rules the lab
    checks, and what the lab needs beyond the CRD (a DNS name and a namespace; an HTTPRoute
    attached to a Gateway and routing somewhere)."""
    where = f"Gateway API {crd_schema.GATEWAY_API_VERSION} CRD"
    out = [Problem(it.where, f"invalid against the {where}: {path}: {message}", "schema")
           for path, message in crd_schema.schema_errors(it.obj)]
    out += [Problem(it.where, f"{path}: {message} (a CEL rule of the {where})", "schema")
            for path, message in crd_schema.cel_problems(it.obj)]
    meta = it.obj.get("metadata") or {}
    if not isinstance(meta.get("name"), str) or not _DNS1123.match(meta.get("name", "")):
        out.append(Problem(it.where, "metadata.name must be a DNS-1123 name", "schema"))
    if not it.namespace:
        out.append(Problem(it.where, "metadata.namespace is required (namespaced kind)", "schema"))
    spec = it.obj.get("spec") if isinstance(it.obj.get("spec"), dict) else {}
    if it.kind == "HTTPRoute" and isinstance(spec, dict):
        for i, ref in enumerate(spec.get("parentRefs") or []):
            if isinstance(ref, dict) and (ref.get("kind", "Gateway"), ref.get(
                    "group", "gateway.networking.k8s.io")) != ("Gateway", "gateway.networking.k8s.io"):
                out.append(Problem(it.where, f"spec.parentRefs[{i}] must refer to a Gateway",
                                   "schema"))
        for i, rule in enumerate(spec.get("rules") or []):
            if isinstance(rule, dict) and not rule.get("backendRefs"):
                out.append(Problem(it.where, f"spec.rules[{i}].backendRefs is empty: the rule "
                                             "routes nowhere", "schema"))
    return out


# --- helpers over the whole set -----------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    """A pod template and the workload it belongs to."""

    item: Item
    spec: dict[str, Any]
    labels: dict[str, str]

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.spec.get("containers") or []) + list(self.spec.get("initContainers") or [])


def templates(items: Iterable[Item]) -> list[Template]:
    out = []
    for it in items:
        t = m.pod_template(it.obj)
        if t is not None:
            out.append(Template(it, t.get("spec") or {}, dict((t.get("metadata") or {}).get("labels")
                                                              or {})))
    return out


def container_port(container: Mapping[str, Any], port: Any) -> int | None:
    """The container port a probe or Service `targetPort` refers to (name or number)."""
    for p in container.get("ports") or []:
        if isinstance(port, str) and p.get("name") == port:
            return int(p["containerPort"])
        if isinstance(port, int) and p.get("containerPort") == port:
            return port
    return None


def services(items: Iterable[Item]) -> dict[tuple[str, str], Item]:
    return {(it.namespace, it.name): it for it in items if it.kind == "Service"}


def spec_for(t: Template) -> ServiceSpec | None:
    return all_specs().get(t.labels.get("app.kubernetes.io/name", ""))


def is_follower(t: Template) -> bool:
    """The long-running variant of a worker (a Deployment), as opposed to its Job/CronJob."""
    return t.item.kind == "Deployment"


def is_lab_image(image: str) -> bool:
    return image.split(":")[0] == IMAGE.split(":")[0]


# --- consistency and course checks --------------------------------------------------------------

def check_labels_and_namespaces(items: list[Item]) -> list[Problem]:
    out = []
    for it in items:
        labels = (it.obj.get("metadata") or {}).get("labels") or {}
        missing = [k for k in REQUIRED_LABELS if k not in labels]
        if missing:
            out.append(Problem(it.where, f"missing label(s) {', '.join(missing)}", "labels"))
        if labels.get(m.PART_OF) != m.PART_OF_VALUE or labels.get("app.kubernetes.io/managed-by") \
                != "labkit":
            out.append(Problem(it.where, f"needs {m.PART_OF}=labkit and app.kubernetes.io/managed-by="
                                         "labkit: cleanup deletes by these labels", "labels"))
        if m.STEP_LABEL in labels and labels[m.STEP_LABEL] != it.step:
            out.append(Problem(it.where, f"label {m.STEP_LABEL}={labels[m.STEP_LABEL]} but the file "
                                         f"is in {it.step}", "labels"))
        if it.kind in m.CLUSTER_SCOPED_KINDS:
            if it.kind != "Namespace":
                out.append(Problem(it.where, "cluster-scoped objects other than the lab's namespaces "
                                             "are not allowed: the lab stays inside its namespaces",
                                   "namespace"))
            elif it.name not in LAB_NAMESPACES:
                out.append(Problem(it.where, f"unexpected namespace {it.name}", "namespace"))
        elif it.namespace not in LAB_NAMESPACES:
            out.append(Problem(it.where, "metadata.namespace must be set explicitly to "
                                         f"{' or '.join(LAB_NAMESPACES)}", "namespace"))
    for t in templates(items):
        missing = [k for k in POD_LABELS if k not in t.labels]
        if missing:
            out.append(Problem(t.item.where, f"pod template misses label(s) {', '.join(missing)}",
                               "labels"))
        for vct in (t.item.obj.get("spec") or {}).get("volumeClaimTemplates") or []:
            if ((vct.get("metadata") or {}).get("labels") or {}).get(m.PART_OF) != m.PART_OF_VALUE:
                out.append(Problem(t.item.where, f"volumeClaimTemplate {vct['metadata'].get('name')} "
                                                 f"needs {m.LAB_SELECTOR} so cleanup removes its PVCs",
                                   "labels"))
    names = {it.name for it in items if it.kind == "Namespace"}
    for ns in LAB_NAMESPACES:
        if ns not in names:
            out.append(Problem("manifests/00-base", f"no Namespace {ns}", "namespace"))
    return out


_TAG = re.compile(r"^[^@]+:(?P<tag>[\w][\w.-]{0,127})$")


def check_images(items: list[Item]) -> list[Problem]:
    out = []
    for t in templates(items):
        for c in t.containers:
            image = c.get("image", "")
            where = f"{t.item.where} container {c.get('name')}"
            if "@sha256:" in image:
                continue
            match = _TAG.match(image.rsplit("/", 1)[-1]) if image else None
            if not match or match.group("tag") == "latest":
                out.append(Problem(where, f"image {image!r} must be pinned to a version (no :latest, "
                                          "no missing tag)", "images"))
            if is_lab_image(image):
                if image != IMAGE:
                    out.append(Problem(where, f"image {image} is not the lab image {IMAGE} "
                                              "(labkit/ops/image.py IMAGE)", "images"))
                if c.get("imagePullPolicy") != "IfNotPresent":
                    out.append(Problem(where, "the lab image is loaded onto the nodes, not pulled: "
                                              "imagePullPolicy must be IfNotPresent", "images"))
    return out


def check_security(items: list[Item]) -> list[Problem]:
    out = []
    for t in templates(items):
        pod_sc = t.spec.get("securityContext") or {}
        for c in t.containers:
            where = f"{t.item.where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if non_root is not True:
                out.append(Problem(where, "runAsNonRoot must be true", "security"))
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                out.append(Problem(where, "runAsUser 0 is root", "security"))
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(Problem(where, "allowPrivilegeEscalation must be false", "security"))
            if sc.get("privileged"):
                out.append(Problem(where, "privileged containers are not allowed", "security"))
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(Problem(where, "readOnlyRootFilesystem must be true", "security"))
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                out.append(Problem(where, "capabilities must drop ALL", "security"))
            if caps.get("add"):
                out.append(Problem(where, f"adds capabilities {caps['add']}", "security"))
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                missing = [r for r in ("cpu", "memory") if r not in (res.get(kind) or {})]
                if missing:
                    out.append(Problem(where, f"resources.{kind} must set {' and '.join(missing)}",
                                       "resources"))
            if is_lab_image(c.get("image", "")) and sc.get("readOnlyRootFilesystem"):
                mounts = {v.get("mountPath") for v in c.get("volumeMounts") or []}
                if "/tmp" not in mounts:
                    out.append(Problem(where, "read-only root filesystem: mount an emptyDir at /tmp",
                                       "security"))
        if t.spec.get("hostNetwork") or t.spec.get("hostPID") or t.spec.get("hostIPC"):
            out.append(Problem(t.item.where, "host namespaces are not allowed", "security"))
    return out


def _probe_port(probe: Mapping[str, Any]) -> Any:
    for k in ("httpGet", "tcpSocket", "grpc"):
        if k in probe:
            return probe[k].get("port")
    return None


def check_probes_and_ports(items: list[Item]) -> list[Problem]:
    out = []
    for t in templates(items):
        spec = spec_for(t)
        for c in t.containers:
            where = f"{t.item.where} container {c.get('name')}"
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                port = _probe_port(probe)
                if port is not None and container_port(c, port) is None:
                    out.append(Problem(where, f"{kind} targets port {port!r}, which the container "
                                              "does not declare", "ports"))
            if not is_lab_image(c.get("image", "")) or spec is None:
                continue
            if spec.http or (spec.probes and is_follower(t)):
                for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    got = ((c.get(kind) or {}).get("httpGet") or {}).get("path")
                    if got != path:
                        out.append(Problem(where, f"{kind} must be an httpGet of {path} "
                                                  f"(got {got!r})", "probes"))
                if container_port(c, "http") != CONTAINER_PORT:
                    out.append(Problem(where, f"must declare containerPort {CONTAINER_PORT} named "
                                              "http (registry CONTAINER_PORT)", "ports"))
            else:
                for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if "httpGet" in (c.get(kind) or {}):
                        out.append(Problem(where, f"{spec.name} serves no HTTP: an httpGet {kind} "
                                                  "would always fail", "probes"))
    return out


def check_services(items: list[Item]) -> list[Problem]:
    out = []
    tpls = templates(items)
    for it in items:
        if it.kind != "Service":
            continue
        selector = (it.obj.get("spec") or {}).get("selector") or {}
        if not selector:
            out.append(Problem(it.where, "has no selector", "selectors"))
            continue
        matched = [t for t in tpls if t.item.namespace == it.namespace
                   and m.selector_matches(selector, t.labels)]
        if not matched:
            out.append(Problem(it.where, f"selector {m.label_selector_string(selector)} matches no "
                                         "pod template", "selectors"))
        for port in (it.obj.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for t in matched:
                if not any(container_port(c, target) for c in t.containers):
                    out.append(Problem(it.where, f"port {port.get('port')} targets {target!r}, which "
                                                 f"{t.item.name}'s containers do not declare", "ports"))
    for it in items:
        if it.kind not in ("Deployment", "StatefulSet"):
            continue
        sel = (it.obj.get("spec") or {}).get("selector")
        labels = ((m.pod_template(it.obj) or {}).get("metadata") or {}).get("labels") or {}
        if not m.selector_matches(sel, labels):
            out.append(Problem(it.where, "spec.selector does not match its own pod template",
                               "selectors"))
    svcs = services(items)
    for spec in SERVICES.values():
        if not spec.http:
            continue
        svc = svcs.get((DEFAULT_NAMESPACE, spec.name))
        if svc is None:
            out.append(Problem("manifests/01-networking", f"no Service {spec.name} (registry)",
                               "services"))
            continue
        ports = (svc.obj.get("spec") or {}).get("ports") or []
        if not any(p.get("port") == SERVICE_PORT for p in ports):
            out.append(Problem(svc.where, f"must expose port {SERVICE_PORT} (registry SERVICE_PORT)",
                               "services"))
        if (svc.obj.get("spec") or {}).get("type", "ClusterIP") != "ClusterIP":
            out.append(Problem(svc.where, "must be a ClusterIP Service", "services"))
    return out


def _find_module(module: str) -> bool:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if found is None:
        return False
    if found.submodule_search_locations is not None:  # a package: `python -m` runs __main__
        try:
            return importlib.util.find_spec(module + ".__main__") is not None
        except ImportError:
            return False
    # A module without a `__main__` block would start, do nothing and exit 0.
    origin = Path(found.origin or "")
    if origin.suffix == ".py" and origin.is_file():
        return "__main__" in origin.read_text(encoding="utf-8", errors="replace")
    return True


def check_entrypoints(items: list[Item], module_exists: Callable[[str], bool] = _find_module
                      ) -> list[Problem]:
    out = []
    seen: set[str] = set()
    for t in templates(items):
        for c in t.containers:
            if not is_lab_image(c.get("image", "")):
                continue
            where = f"{t.item.where} container {c.get('name')}"
            cmd = [str(x) for x in (c.get("command") or [])] + [str(x) for x in c.get("args") or []]
            spec = spec_for(t)
            if spec is None:
                out.append(Problem(where, f"label app.kubernetes.io/name="
                                          f"{t.labels.get('app.kubernetes.io/name')!r} names no "
                                          "process in ecommerce/services/registry.py", "entrypoints"))
                continue
            seen.add(spec.name)
            if cmd[:2] != ["python", "-m"] or len(cmd) < 3:
                out.append(Problem(where, f"command {cmd} must be `python -m {spec.module} ...`",
                                   "entrypoints"))
                continue
            if cmd[2] != spec.module:
                out.append(Problem(where, f"runs {cmd[2]}, but the registry's {spec.name} is "
                                          f"{spec.module}", "entrypoints"))
            elif not module_exists(cmd[2]):
                out.append(Problem(where, f"{cmd[2]} is not a real entrypoint: `python -m {cmd[2]}` "
                                          "finds no such module with a __main__ block", "entrypoints"))
            variants = ARG_VARIANTS.get(spec.name, {spec.args})
            if tuple(cmd[3:]) not in variants:
                allowed = " | ".join(repr(" ".join(v)) for v in sorted(variants))
                out.append(Problem(where, f"arguments {' '.join(cmd[3:])!r} are not one of {allowed}",
                                   "entrypoints"))
    for name in all_specs():
        if name not in seen:
            out.append(Problem("manifests", f"no workload runs {name} (registry)", "entrypoints"))
    return out


def check_env(items: list[Item]) -> list[Problem]:
    out = []
    svcs = services(items)
    secrets = {(it.namespace, it.name): it for it in items if it.kind == "Secret"}
    for t in templates(items):
        spec = spec_for(t)
        ns = t.item.namespace
        for c in t.containers:
            where = f"{t.item.where} container {c.get('name')}"
            env = m.env_vars(c)
            for var in env.values():
                if var.value is not None and re.search(r"PASSWORD|TOKEN|SECRET", var.name):
                    out.append(Problem(where, f"{var.name} is a literal: credentials come from a "
                                              "Secret (secretKeyRef)", "secrets"))
                if var.value is not None and re.search(r"://[^/@\s]+:[^/@\s]+@", var.value):
                    out.append(Problem(where, f"{var.name} holds a password in a literal URL: use a "
                                              "secretKeyRef", "secrets"))
                if var.source and var.source.startswith("secret:"):
                    name, _, key = var.source[len("secret:"):].partition("/")
                    sec = secrets.get((ns, name))
                    data = {**((sec.obj.get("data") or {}) if sec else {}),
                            **((sec.obj.get("stringData") or {}) if sec else {})}
                    optional = any(
                        e.get("name") == var.name
                        and ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("optional")
                        for e in c.get("env") or [])
                    if (sec is None or key not in data) and not optional:
                        out.append(Problem(where, f"{var.name} reads Secret {name} key {key}, which "
                                                  "the manifests do not define", "env"))
            if spec is None or not is_lab_image(c.get("image", "")):
                continue
            wanted, got = set(spec.env_for(is_follower(t))), set(env)
            for name in sorted(wanted - got):
                out.append(Problem(where, f"{spec.name} reads {name} but the manifest does not set "
                                          "it", "env"))
            for name in sorted(n for n in got - wanted if n.startswith("LABKIT_")):
                out.append(Problem(where, f"sets {name}, which {spec.name} does not read "
                                          "(registry)", "env"))
            for name, var in env.items():
                out += _check_env_value(where, ns, name, var, c, svcs, secrets)
    return out


def _service_has_port(svcs: Mapping[tuple[str, str], Item], ns: str, name: str | None,
                      port: int | None) -> bool:
    if name is None or port is None:
        return False
    svc = svcs.get((ns, name))
    return svc is not None and any(p.get("port") == port for p in
                                   (svc.obj.get("spec") or {}).get("ports") or [])


def _secret_value(secrets: Mapping[tuple[str, str], Item], ns: str, source: str) -> str | None:
    """The value of `secret:<name>/<key>` from a Secret's stringData (or base64 data)."""
    import base64

    name, _, key = source[len("secret:"):].partition("/")
    sec = secrets.get((ns, name))
    if sec is None:
        return None
    if key in (sec.obj.get("stringData") or {}):
        return str(sec.obj["stringData"][key])
    raw = (sec.obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


def _check_env_value(where: str, ns: str, name: str, var: m.EnvVar, c: Mapping[str, Any],
                     svcs: Mapping[tuple[str, str], Item],
                     secrets: Mapping[tuple[str, str], Item] | None = None) -> list[Problem]:
    bad = []
    if name == "LABKIT_PG_URL" and not (var.source or "").startswith("secret:"):
        bad.append(f"{name} must come from the database Secret (secretKeyRef), not a literal")
    elif name == "LABKIT_PORT" and (var.value is None or container_port(c, "http") != int(var.value)):
        bad.append(f"{name}={var.value} is not the container's http port")
    elif name == "LABKIT_HOST" and var.value != "0.0.0.0":
        bad.append(f"{name} must be 0.0.0.0 (reachable from the Service)")
    elif name == "LABKIT_FAULTS" and var.value != "0":
        bad.append(f"{name} must be \"0\": fault injection is off unless asked for (the "
                   "failure notebooks use manifests/components/faults or `labkit up --faults`)")
    elif name == "LABKIT_ADMIN_TOKEN" and not (var.source or "").startswith("secret:"):
        bad.append(f"{name} must come from a Secret (secretKeyRef, optional: admin is off "
                   "until the Secret exists)")
    elif name == "LABKIT_REDIS_URL":
        source = var.source or ""
        url = _secret_value(secrets or {}, ns, source) if source.startswith("secret:") else None
        match = re.match(r"^redis://[^:@/]*:([^@/]+)@([a-z0-9-]+):(\d+)(/\d+)?$", url or "")
        if not source.startswith("secret:"):
            bad.append(f"{name} must come from the redis-credentials Secret (secretKeyRef): the "
                       "URL carries Redis's password")
        elif not match or not _service_has_port(svcs, ns, match.group(2), int(match.group(3))):
            bad.append(f"{name} ({source}) must be redis://:<password>@<Service>:<port>/<db> of a "
                       "Service in the manifests")
        elif _secret_value(secrets or {}, ns, source.rsplit("/", 1)[0] + "/password") != \
                match.group(1):
            bad.append(f"{name} ({source}) carries a password other than the Secret's `password` "
                       "key, which redis-server requires")
    elif name.endswith("_URL") and name.startswith("LABKIT_") and name not in (
            "LABKIT_PG_URL", "LABKIT_REDIS_URL"):
        peer = name[len("LABKIT_"):-len("_URL")].lower().replace("_", "-")
        if var.value != f"http://{peer}":
            bad.append(f"{name}={var.value!r} must be http://{peer} (the Service, port "
                       f"{SERVICE_PORT})")
        elif not _service_has_port(svcs, ns, peer, SERVICE_PORT):
            bad.append(f"{name} points at Service {peer}, which does not exist with port "
                       f"{SERVICE_PORT}")
    return [Problem(where, b, "env") for b in bad]


def check_configmaps(items: list[Item]) -> list[Problem]:
    out = []
    for it in items:
        if it.kind != "ConfigMap":
            continue
        for k, v in (it.obj.get("data") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|PG_URL|credential", k, re.I) or \
                    re.search(r"://[^/@\s]+:[^/@\s]+@", str(v)):
                out.append(Problem(it.where, f"key {k} looks like a credential: use a Secret",
                                   "secrets"))
    return out


FORBIDDEN_VERBS = {"escalate", "bind", "impersonate"}


def check_rbac(items: list[Item]) -> list[Problem]:
    out = []
    roles = [it for it in items if it.kind in ("Role", "ClusterRole")]
    for it in items:
        if it.kind in ("ClusterRole", "ClusterRoleBinding"):
            out.append(Problem(it.where, "the student's access must be namespaced (Role, "
                                         "RoleBinding)", "rbac"))
    for it in roles:
        for i, rule in enumerate(it.obj.get("rules") or []):
            where = f"{it.where} rules[{i}]"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if "*" in (rule.get(field) or []):
                    out.append(Problem(where, f"wildcard in {field}: list exactly what is needed",
                                       "rbac"))
            if "secrets" in (rule.get("resources") or []):
                out.append(Problem(where, "grants access to Secrets", "rbac"))
            if FORBIDDEN_VERBS & set(rule.get("verbs") or []):
                out.append(Problem(where, f"grants {', '.join(sorted(FORBIDDEN_VERBS & set(rule['verbs'])))}",
                                   "rbac"))
    student = next((it for it in roles if it.kind == "Role" and it.namespace == DEFAULT_NAMESPACE),
                   None)
    if student is None:
        return [*out, Problem("manifests/00-base", "no student Role in the lab namespace", "rbac")]
    bound = any(it.kind == "RoleBinding" and it.namespace == DEFAULT_NAMESPACE
                and (it.obj.get("roleRef") or {}).get("name") == student.name for it in items)
    if not bound:
        out.append(Problem(student.where, "is not bound by a RoleBinding", "rbac"))

    def allows(verb: str, group: str, resource: str) -> bool:
        return any(group in (r.get("apiGroups") or []) and resource in (r.get("resources") or [])
                   and verb in (r.get("verbs") or []) for r in student.obj.get("rules") or [])

    if not allows("get", "", "pods/log"):
        out.append(Problem(student.where, "must allow get on pods/log (logs)", "rbac"))
    # A websocket upgrade is a GET (authorized as `get`); from Kubernetes 1.35 `create` is
    # checked too: port-forward (lab.http, lab.url) and exec need both.
    for verb in ("get", "create"):
        if not allows(verb, "", "pods/portforward"):
            out.append(Problem(student.where, f"must allow {verb} on pods/portforward (port-forward "
                                              "is a websocket GET, authorized as get and create)",
                               "rbac"))
    tester = next((it for it in roles if it.kind == "Role" and it.namespace == m.TESTING_NAMESPACE),
                  None)
    if tester is not None:
        for verb in ("get", "create"):
            if not any("" in (r.get("apiGroups") or []) and "pods/exec" in (r.get("resources") or [])
                       and verb in (r.get("verbs") or []) for r in tester.obj.get("rules") or []):
                out.append(Problem(tester.where, f"must allow {verb} on pods/exec (kubectl exec is "
                                                 "a websocket GET, authorized as get and create)",
                                   "rbac"))
    # The student applies steps 01-04: create + patch on every kind in them.
    plural = {"Service": ("", "services"), "Deployment": ("apps", "deployments"),
              "Job": ("batch", "jobs"), "CronJob": ("batch", "cronjobs"),
              "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
              "Ingress": ("networking.k8s.io", "ingresses"),
              "Gateway": ("gateway.networking.k8s.io", "gateways"),
              "HTTPRoute": ("gateway.networking.k8s.io", "httproutes")}
    for kind in sorted({it.kind for it in items if it.step != "00-base"}):
        if kind not in plural:
            out.append(Problem(student.where, f"no RBAC mapping for {kind} in labkit/ops/validate.py",
                               "rbac"))
            continue
        group, resource = plural[kind]
        for verb in ("create", "patch"):
            if not allows(verb, group, resource):
                out.append(Problem(student.where, f"must allow {verb} on {resource} (the student "
                                                  f"applies {kind} objects)", "rbac"))
    return out


# --- routing ------------------------------------------------------------------------------------

def registry_routes() -> dict[str, str]:
    return {r: s.name for s in SERVICES.values() for r in s.routes}


def check_routing(items: list[Item]) -> list[Problem]:
    out = []
    svcs = services(items)
    want = registry_routes()
    for route in COURSE_ROUTES:
        if route not in want:
            out.append(Problem("ecommerce/services/registry.py", f"no service has the course's route "
                                                              f"{route}", "routing"))
    gateways = {(it.namespace, it.name): it for it in items if it.kind == "Gateway"}
    routes = [it for it in items if it.kind == "HTTPRoute"]
    if not routes:
        out.append(Problem("manifests/01-networking", "no HTTPRoute (Gateway API)", "routing"))
    got: dict[str, str | None] = {}
    for it in routes:
        spec = it.obj.get("spec") or {}
        for ref in spec.get("parentRefs") or []:
            gw = gateways.get((ref.get("namespace") or it.namespace, ref.get("name")))
            if gw is None:
                out.append(Problem(it.where, f"parentRef {ref.get('name')} is not a Gateway in the "
                                             "manifests", "routing"))
            elif ref.get("sectionName") and ref["sectionName"] not in {
                    ls.get("name") for ls in (gw.obj.get("spec") or {}).get("listeners") or []}:
                out.append(Problem(it.where, f"parentRef sectionName {ref['sectionName']} is not a "
                                             f"listener of {gw.name}", "routing"))
        if "api.local" not in (spec.get("hostnames") or ["api.local"]):
            out.append(Problem(it.where, "hostnames must include the course's api.local", "routing"))
        for rule in spec.get("rules") or []:
            backends = rule.get("backendRefs") or []
            for b in backends:
                if b.get("kind", "Service") != "Service":
                    continue
                if not _service_has_port(svcs, b.get("namespace") or it.namespace, b.get("name"),
                                         b.get("port")):
                    out.append(Problem(it.where, f"backendRef {b.get('name')}:{b.get('port')} is not "
                                                 "a Service port in the manifests", "routing"))
            for match in rule.get("matches") or []:
                path = match.get("path") or {}
                if path.get("type", "PathPrefix") == "PathPrefix" and backends:
                    got[path.get("value", "/")] = backends[0].get("name")
    out += _compare_routes("HTTPRoute", got, want)

    ingresses = [it for it in items if it.kind == "Ingress"]
    if not ingresses:
        out.append(Problem("manifests/01-networking", "no Ingress (the course's legacy API)",
                           "routing"))
    got = {}
    for it in ingresses:
        annotations = (it.obj.get("metadata") or {}).get("annotations") or {}
        for k in annotations:
            if k.endswith("/rewrite-target"):
                out.append(Problem(it.where, f"{k} rewrites every path (the course's bug): the "
                                             "services serve the full /api/... paths", "routing"))
        for rule in (it.obj.get("spec") or {}).get("rules") or []:
            if rule.get("host") != "api.local":
                out.append(Problem(it.where, "rules must use the course's host api.local", "routing"))
            for p in (rule.get("http") or {}).get("paths") or []:
                svc = (p.get("backend") or {}).get("service") or {}
                port = (svc.get("port") or {}).get("number")
                if not _service_has_port(svcs, it.namespace, svc.get("name"), port):
                    out.append(Problem(it.where, f"backend {svc.get('name')}:{port} is not a Service "
                                                 "port in the manifests", "routing"))
                if p.get("pathType") == "Prefix":
                    got[p.get("path")] = svc.get("name")
    out += _compare_routes("Ingress", got, want)
    return out


def _compare_routes(what: str, got: Mapping[str, str | None], want: Mapping[str, str]) -> list[Problem]:
    out = []
    for route, svc in want.items():
        if got.get(route) != svc:
            out.append(Problem(f"manifests/01-networking {what}", f"must route prefix {route} to "
                                                                   f"{svc} (got {got.get(route)})",
                               "routing"))
    for route in set(got) - set(want):
        out.append(Problem(f"manifests/01-networking {what}", f"routes {route}, which no service "
                                                               "serves (registry routes)", "routing"))
    return out


# --- network policies ---------------------------------------------------------------------------

Path3 = tuple[str, str, int]  # (caller, callee, pod port)


def real_call_paths() -> set[Path3]:
    """Every connection the lab makes, from the registry; callers/callees by pod name label."""
    paths: set[Path3] = set()
    for spec in all_specs().values():
        for store in spec.stores:
            callee, port = STORE_PORTS[store]
            paths.add((spec.name, callee, port))
        for peer in spec.calls:
            paths.add((spec.name, peer, CONTAINER_PORT))
        if spec.http:
            paths.add((LOAD_TESTER, spec.name, CONTAINER_PORT))
        if spec.routes:
            paths.add((GATEWAY, spec.name, CONTAINER_PORT))
    return paths


def _names(selector: Mapping[str, Any], tpls: list[Template], namespace: str) -> set[str]:
    return {t.labels.get("app.kubernetes.io/name", "?") for t in tpls
            if t.item.namespace == namespace and m.selector_matches(selector, t.labels)}


def _peer_names(peer: Mapping[str, Any], tpls: list[Template], own_ns: str) -> set[str] | None:
    """Pod names a NetworkPolicy peer admits; None when it admits more than the lab can name."""
    if "ipBlock" in peer:
        return {GATEWAY}
    ns_sel = peer.get("namespaceSelector")
    pod_sel = peer.get("podSelector")
    if ns_sel is None and _is_gateway_data_plane(pod_sel):
        return {GATEWAY}  # the data plane in the Gateway's own namespace
    if ns_sel is None:
        return _names(pod_sel or {}, tpls, own_ns) if pod_sel is not None else None
    ns_names = set((ns_sel.get("matchLabels") or {}).values())
    for expr in ns_sel.get("matchExpressions") or []:
        if expr.get("key") == "kubernetes.io/metadata.name" and expr.get("operator") == "In":
            ns_names |= set(expr.get("values") or [])
    if ns_names and ns_names.isdisjoint(LAB_NAMESPACES):
        return {GATEWAY}  # a gateway / ingress controller's namespace
    if pod_sel is None:
        return None  # every pod of a namespace
    found = set()
    for ns in ns_names & set(LAB_NAMESPACES):
        found |= _names(pod_sel, tpls, ns)
    return found


def _rule_ports(rule: Mapping[str, Any], callee_tpls: list[Template]) -> list[int] | None:
    ports = []
    for p in rule.get("ports") or []:
        port = p.get("port")
        if isinstance(port, str):
            resolved = {container_port(c, port) for t in callee_tpls for c in t.containers} - {None}
            ports += sorted(x for x in resolved if x is not None)
        elif port is not None:
            ports.append(int(port))
        else:
            return None
    return ports or None


def _is_gateway_data_plane(selector: Mapping[str, Any] | None) -> bool:
    return ((selector or {}).get("matchLabels") or {}).get(GATEWAY_NAME_LABEL) == GATEWAY_NAME


def check_gateway_data_plane(p: Item, tpls: list[Template]) -> list[Problem]:
    """The policy for a data plane in the lab namespace: open ingress (a gateway's job), egress
    only to the routed services' port and to a known control plane's port."""
    out = []
    spec = p.obj.get("spec") or {}
    routed = {s.name for s in all_specs().values() if s.routes}
    for i, rule in enumerate(spec.get("egress") or []):
        where = f"{p.where} egress[{i}]"
        ports = {pt.get("port") for pt in rule.get("ports") or []}
        for peer in rule.get("to") or [{}]:
            ns_sel = peer.get("namespaceSelector")
            if ns_sel is not None:
                names = {v for e in ns_sel.get("matchExpressions") or []
                         if e.get("key") == "kubernetes.io/metadata.name"
                         and e.get("operator") == "In" for v in e.get("values") or []}
                unknown = names - set(GATEWAY_CONTROL_PLANES)
                if not names or unknown or peer.get("podSelector") is not None:
                    out.append(Problem(where, "may reach only the gateway controllers' namespaces "
                                              f"({', '.join(GATEWAY_CONTROL_PLANES)})", "netpol"))
                if not ports or ports - set(GATEWAY_CONTROL_PLANES.values()):
                    out.append(Problem(where, "may reach the control plane only on its xDS/agent "
                                              f"ports ({sorted(GATEWAY_CONTROL_PLANES.values())})",
                                       "netpol"))
                continue
            names = _names(peer.get("podSelector") or {}, tpls, p.namespace)
            if not names or names - routed or "ipBlock" in peer:
                out.append(Problem(where, f"may reach only the routed services, not "
                                          f"{', '.join(sorted(names - routed)) or 'everything'}",
                                   "netpol"))
            if ports != {CONTAINER_PORT}:
                out.append(Problem(where, f"may reach the services only on {CONTAINER_PORT}",
                                   "netpol"))
    return out


def check_network_policies(items: list[Item]) -> list[Problem]:
    out = []
    tpls = templates(items)
    policies = [it for it in items if it.kind == "NetworkPolicy"]
    ns = DEFAULT_NAMESPACE
    deny = [p for p in policies if p.namespace == ns
            and (p.obj["spec"].get("podSelector") == {})
            and set(p.obj["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
            and not p.obj["spec"].get("ingress") and not p.obj["spec"].get("egress")]
    if not deny:
        out.append(Problem("manifests/01-networking", f"no default-deny NetworkPolicy (podSelector "
                                                      f"{{}}, Ingress and Egress) in {ns}", "netpol"))
    paths = real_call_paths()
    ingress_allowed: set[Path3] = set()
    egress_allowed: set[Path3] = set()
    dns = False
    data_plane = [p for p in policies if _is_gateway_data_plane(p.obj["spec"].get("podSelector"))]
    if not data_plane:
        out.append(Problem("manifests/01-networking", f"no NetworkPolicy for a Gateway data plane "
                                                      f"in {ns} (pods labelled {GATEWAY_NAME_LABEL}: "
                                                      f"{GATEWAY_NAME}); default-deny blocks it",
                           "netpol"))
    for p in data_plane:
        out += check_gateway_data_plane(p, tpls)
    gateway_pods: set[str] = set()
    for p in policies:
        if p in deny or p in data_plane:
            continue
        spec = p.obj.get("spec") or {}
        selected_tpls = [t for t in tpls if t.item.namespace == p.namespace
                         and m.selector_matches(spec.get("podSelector") or {}, t.labels)]
        selected = {t.labels.get("app.kubernetes.io/name", "?") for t in selected_tpls}
        for i, rule in enumerate(spec.get("ingress") or []):
            where = f"{p.where} ingress[{i}]"
            ports = _rule_ports(rule, selected_tpls)
            peers = [_peer_names(peer, tpls, p.namespace) for peer in rule.get("from") or []]
            if ports is None or not rule.get("from") or None in peers:
                out.append(Problem(where, "allows any port or any peer: name the caller and the "
                                          "port of one real call path", "netpol"))
                continue
            if any(_is_gateway_data_plane(peer.get("podSelector")) and "namespaceSelector" not in peer
                   for peer in rule.get("from") or []):
                gateway_pods |= selected
            for callers in peers:
                for caller in callers or ():
                    for callee in selected:
                        for port in ports:
                            ingress_allowed.add((caller, callee, port))
                            if (caller, callee, port) not in paths:
                                out.append(Problem(where, f"allows {caller} -> {callee}:{port}, "
                                                          "which is not a real call path", "netpol"))
        for i, rule in enumerate(spec.get("egress") or []):
            where = f"{p.where} egress[{i}]"
            to = rule.get("to") or []
            if _is_dns_rule(rule):
                dns = True
                continue
            if not to:
                out.append(Problem(where, "allows egress anywhere", "netpol"))
                continue
            callee_names: set[str] = set()
            callee_tpls: list[Template] = []
            for peer in to:
                names = _peer_names(peer, tpls, p.namespace)
                if names is None or names == {GATEWAY}:
                    out.append(Problem(where, "allows egress to a whole namespace or address block",
                                       "netpol"))
                    continue
                callee_names |= names
                callee_tpls += [t for t in tpls if t.labels.get("app.kubernetes.io/name") in names]
            ports = _rule_ports(rule, callee_tpls)
            if ports is None:
                out.append(Problem(where, "allows any port", "netpol"))
                continue
            for caller in selected:
                for callee in callee_names:
                    for port in ports:
                        egress_allowed.add((caller, callee, port))
                        if (caller, callee, port) not in paths:
                            out.append(Problem(where, f"allows {caller} -> {callee}:{port}, which "
                                                      "is not a real call path", "netpol"))
    if not dns:
        out.append(Problem("manifests/01-networking", "no NetworkPolicy allows DNS egress (UDP/TCP 53 "
                                                      "to kube-dns)", "netpol"))
    for caller, callee, port in sorted(paths):
        if caller == GATEWAY and callee not in gateway_pods:
            out.append(Problem("manifests/01-networking", f"{callee}'s ingress does not admit a Gateway "
                                                          f"data plane in its own namespace (peer "
                                                          f"podSelector {GATEWAY_NAME_LABEL}: "
                                                          f"{GATEWAY_NAME})", "netpol"))
        if (caller, callee, port) not in ingress_allowed:
            out.append(Problem("manifests/01-networking", f"real call path {caller} -> {callee}:{port} "
                                                          "is blocked: no ingress rule allows it",
                               "netpol"))
        if caller not in (GATEWAY, LOAD_TESTER) and (caller, callee, port) not in egress_allowed:
            out.append(Problem("manifests/01-networking", f"real call path {caller} -> {callee}:{port} "
                                                          "is blocked: no egress rule allows it",
                               "netpol"))
    return out


def _is_dns_rule(rule: Mapping[str, Any]) -> bool:
    ports = rule.get("ports") or []
    if not ports or any(p.get("port") != 53 for p in ports):
        return False
    for peer in rule.get("to") or []:
        pod = (peer.get("podSelector") or {}).get("matchLabels") or {}
        if pod.get("k8s-app") != "kube-dns":
            return False
    return bool(rule.get("to"))


# --- course requirements on specific workloads ---------------------------------------------------

def _find(items: list[Item], kind: str, name: str) -> Item | None:
    return next((it for it in items if it.kind == kind and it.name == name), None)


def _command(it: Item) -> list[str]:
    t = m.pod_template(it.obj) or {}
    c = ((t.get("spec") or {}).get("containers") or [{}])[0]
    return [str(x) for x in (c.get("command") or [])] + [str(x) for x in c.get("args") or []]


def check_workloads(items: list[Item]) -> list[Problem]:
    out = []

    def need(kind: str, name: str, step: str) -> Item | None:
        it = _find(items, kind, name)
        if it is None:
            out.append(Problem(f"manifests/{step}", f"no {kind} {name}", "workloads"))
        elif it.step != step:
            out.append(Problem(it.where, f"belongs in {step}", "workloads"))
        return it

    pg = need("StatefulSet", "postgres", "00-base")
    if pg is not None:
        spec = pg.obj["spec"]
        c = spec["template"]["spec"]["containers"][0]
        if not spec.get("volumeClaimTemplates"):
            out.append(Problem(pg.where, "needs a PersistentVolumeClaim (volumeClaimTemplates)",
                               "workloads"))
        if not c.get("readinessProbe"):
            out.append(Problem(pg.where, "needs a readiness probe", "workloads"))
        for var in ("POSTGRES_PASSWORD", "POSTGRES_USER"):
            src = m.env_vars(c).get(var)
            if src is None or not (src.source or "").startswith("secret:"):
                out.append(Problem(pg.where, f"{var} must come from the Secret", "workloads"))
    need("Deployment", "redis", "00-base")
    need("Deployment", "load-tester", "00-base")
    for name in ("user-service", "order-service", "inventory-service", "payment-service"):
        need("Deployment", name, "02-saga")
    job = need("Job", "saga-orchestrator", "02-saga")
    if job is not None:
        spec = job.obj["spec"]
        for field in ("backoffLimit", "ttlSecondsAfterFinished"):
            if field not in spec:
                out.append(Problem(job.where, f"must set {field}", "workloads"))
        if _command(job)[3:] != ["run", "--pending"]:
            out.append(Problem(job.where, "must run `python -m ecommerce.saga run --pending`",
                               "workloads"))
    follow = need("Deployment", "saga-orchestrator-follow", "02-saga")
    if follow is not None and _command(follow)[3:] != ["run", "--follow"]:
        out.append(Problem(follow.where, "must run `run --follow`", "workloads"))
    for name, replicas in (("command-service", 2), ("query-service", 3)):
        it = need("Deployment", name, "03-cqrs")
        if it is not None and it.obj["spec"].get("replicas") != replicas:
            out.append(Problem(it.where, f"must run {replicas} replicas", "workloads"))
    need("Deployment", "event-store-api", "04-event-sourcing")
    cron = need("CronJob", "event-processor", "04-event-sourcing")
    if cron is not None:
        if cron.obj["spec"].get("concurrencyPolicy") != "Forbid":
            out.append(Problem(cron.where, "concurrencyPolicy must be Forbid", "workloads"))
        if "--follow" in _command(cron):
            out.append(Problem(cron.where, "the CronJob catches up once: no --follow", "workloads"))
    pf = need("Deployment", "event-processor-follow", "04-event-sourcing")
    if pf is not None and _command(pf)[3:] != ["--follow"]:
        out.append(Problem(pf.where, "must run with --follow", "workloads"))
    replay = need("Job", "event-replay", "04-event-sourcing")
    if replay is not None and _command(replay)[3:] != ["--all"]:
        out.append(Problem(replay.where, "must run `python -m ecommerce.projections.replay --all`",
                           "workloads"))
    for it in items:
        if it.kind == "Job" or (it.kind == "CronJob"):
            t = m.pod_template(it.obj) or {}
            if (t.get("spec") or {}).get("restartPolicy") not in ("Never", "OnFailure"):
                out.append(Problem(it.where, "a Job's pods need restartPolicy Never or OnFailure",
                                   "workloads"))
    return out


# --- files that are not Kubernetes objects -------------------------------------------------------

def check_kind_config(path: Path, k8s_version: str) -> list[Problem]:
    where = "manifests/kind-config.yaml"
    if not path.is_file():
        return [Problem(where, "missing (the course's 3-node kind cluster)", "kind")]
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    if cfg.get("kind") != "Cluster" or cfg.get("apiVersion") != "kind.x-k8s.io/v1alpha4":
        out.append(Problem(where, "must be kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4", "kind"))
    out += _unknown(where, cfg, {"kind", "apiVersion", "name", "nodes", "networking",
                                 "featureGates", "runtimeConfig", "kubeadmConfigPatches",
                                 "kubeadmConfigPatchesJSON6902", "containerdConfigPatches"}, "(root)")
    nodes = cfg.get("nodes") or []
    roles = [n.get("role") for n in nodes]
    if roles.count("control-plane") != 1 or roles.count("worker") != 2:
        out.append(Problem(where, f"must have 1 control-plane and 2 workers (got {roles})", "kind"))
    want_minor = tuple(int(x) for x in k8s_version.split(".")[:2])
    for i, n in enumerate(nodes):
        out += _unknown(where, n, {"role", "image", "labels", "extraPortMappings", "extraMounts",
                                   "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"},
                        f"nodes[{i}]")
        match = re.match(r"^kindest/node:v(\d+)\.(\d+)\.(\d+)(@sha256:[0-9a-f]{64})?$",
                         n.get("image", ""))
        if not match:
            out.append(Problem(where, f"nodes[{i}].image must pin kindest/node:vX.Y.Z", "kind"))
        elif (int(match.group(1)), int(match.group(2))) < want_minor:
            out.append(Problem(where, f"nodes[{i}] runs Kubernetes {match.group(1)}.{match.group(2)}, "
                                      f"older than the validated {k8s_version}", "kind"))
    cp: dict[str, Any] = next((n for n in nodes if n.get("role") == "control-plane"), {})
    host_ports = {p.get("hostPort") for p in cp.get("extraPortMappings") or []}
    if not {80, 443} <= host_ports:
        out.append(Problem(where, "the control-plane must map host ports 80 and 443", "kind"))
    return out


def check_dockerfile(path: Path, items: list[Item]) -> list[Problem]:
    where = "Dockerfile"
    if not path.is_file():
        return [Problem(where, "missing: the manifests run the image built from it", "dockerfile")]
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    logical: list[str] = []
    buf = ""
    for ln in lines:
        if ln.startswith("#") and not buf:
            continue
        buf += " " + ln.rstrip("\\").strip()
        if not ln.endswith("\\"):
            if buf.strip():
                logical.append(buf.strip())
            buf = ""
    stages: list[list[str]] = []
    out = []
    for ln in logical:
        word = ln.split()[0].upper()
        if word == "FROM":
            image = ln.split()[1]
            if ":" not in image or image.endswith(":latest"):
                out.append(Problem(where, f"base image {image} must be pinned", "dockerfile"))
            elif "slim" not in image and "distroless" not in image:
                out.append(Problem(where, f"base image {image} should be a slim Python image",
                                   "dockerfile"))
            stages.append([])
        if stages:
            stages[-1].append(ln)
    if not stages:
        return [Problem(where, "has no FROM", "dockerfile")]
    final = stages[-1]
    users = [ln.split()[1] for ln in final if ln.split()[0].upper() == "USER"]
    uid = users[-1].split(":")[0] if users else ""
    if not uid.isdigit() or uid == "0":
        out.append(Problem(where, "the final stage must switch to a numeric non-root USER (so "
                                  "runAsNonRoot can be verified)", "dockerfile"))
    for ln in final:
        if ln.split()[0].upper() == "RUN" and re.search(
                r"apt-get install|apk add|pip install|gcc|build-essential|make ", ln):
            out.append(Problem(where, f"the final stage installs packages or build tools ({ln[:60]}"
                                      "...): install in the build stage and copy the result",
                               "dockerfile"))
    if uid.isdigit():
        for t in templates(items):
            if any(is_lab_image(c.get("image", "")) for c in t.containers):
                run_as = (t.spec.get("securityContext") or {}).get("runAsUser")
                if run_as is not None and str(run_as) != uid:
                    out.append(Problem(t.item.where, f"runAsUser {run_as} differs from the image's "
                                                     f"USER {uid}", "dockerfile"))
    return out


# --- entry points -------------------------------------------------------------------------------

#: Known-fixed CVEs of third-party images, checked offline: image name -> (CVE, fixed patch per
#: minor). Redis's Lua use-after-free CVE-2025-49844 ("RediShell", advisory of 2025-10-03).
KNOWN_FIXED_CVES: dict[str, list[tuple[str, dict[tuple[int, int], int]]]] = {
    "redis": [("CVE-2025-49844", {(6, 2): 20, (7, 2): 11, (7, 4): 6, (8, 0): 4, (8, 2): 2})],
}


def check_known_cves(items: list[Item]) -> list[Problem]:
    """A third-party image whose tag is older than the patch that fixed a known CVE."""
    out = []
    for t in templates(items):
        for c in t.containers:
            image = c.get("image", "").split("@", 1)[0]
            name, _, tag = image.rpartition(":")
            match = re.match(r"^(\d+)\.(\d+)\.(\d+)", tag)
            if not match:
                continue
            major, minor, patch = map(int, match.groups())
            for cve, fixed in KNOWN_FIXED_CVES.get(name.split("/")[-1], []):
                first = fixed.get((major, minor))
                if first is not None and patch < first:
                    out.append(Problem(f"{t.item.where} container {c.get('name')}",
                                       f"image {image} has {cve}, fixed in {major}.{minor}.{first}: "
                                       "use a current patch release", "images"))
    return out


def check_redis_auth(items: list[Item]) -> list[Problem]:
    """redis-server requires the Secret's password and keeps protected mode on."""
    redis = _find(items, "Deployment", "redis")
    if redis is None:
        return []
    c = m.pod_template(redis.obj)["spec"]["containers"][0]  # type: ignore[index]
    args = [str(a) for a in c.get("args") or []]
    env = m.env_vars(c)

    def after(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args[:-1] else None

    out = []
    password = after("--requirepass")
    var = password[2:-1] if password and password.startswith("$(") else None
    if var is None or not (env.get(var) and (env[var].source or "").startswith("secret:")):
        out.append(Problem(redis.where, "redis-server must run with --requirepass $(VAR), VAR from "
                                        "the redis-credentials Secret", "secrets"))
    if after("--protected-mode") != "yes":
        out.append(Problem(redis.where, "redis-server must keep --protected-mode yes", "secrets"))
    return out


CHECKS: tuple[Callable[[list[Item]], list[Problem]], ...] = (
    check_labels_and_namespaces,
    check_images,
    check_known_cves,
    check_redis_auth,
    check_security,
    check_probes_and_ports,
    check_services,
    check_entrypoints,
    check_env,
    check_configmaps,
    check_rbac,
    check_routing,
    check_network_policies,
    check_workloads,
)


def check_items(items: list[Item], k8s_version: str = DEFAULT_K8S_VERSION, *,
                schemas: bool = True) -> list[Problem]:
    """Every check over already-loaded objects (the tests mutate objects and call this)."""
    out = check_schemas(items, k8s_version) if schemas else []
    for check in CHECKS:
        out += check(items)
    return out


def validate_all(k8s_version: str = DEFAULT_K8S_VERSION, root: Path | None = None,
                 repo: Path | None = None) -> list[Problem]:
    """Strict schemas + consistency checks for every manifest; [] when all is well."""
    root = m.manifests_dir(root)
    repo = repo or root.parent
    items, problems = load_items(root)
    problems += check_items(items, k8s_version)
    problems += check_kind_config(root / "kind-config.yaml", k8s_version)
    problems += check_dockerfile(repo / "Dockerfile", items)
    return problems


def summary(root: Path | None = None) -> tuple[int, int]:
    items, _ = load_items(root)
    return len(items), len({it.path for it in items})
