"""Cluster mode: run the lab's manifests on Kubernetes with the official client.

    rt = ClusterRuntime()                 # LABKIT_NAMESPACE or ecommerce-microservices
    rt.up()                               # every step, in order; or up("02-saga")
    rt.http("order-service").get("/api/orders")
    rt.run_job("event-processor")         # like kubectl create job --from=cronjob/...
    rt.kill("payment-service")            # the crash scenarios
    rt.down()                             # deletes exactly what the lab applied

Every object is applied with server-side apply (field manager `labkit`, the namespace set per
object), so re-applying is idempotent. Waits show progress and, when something is stuck, say
why (image pulls, crash loops, scheduling, probes). Failures to reach or use the cluster raise
`ClusterError` with one sentence saying what to do. All API access goes through `KubeApi`
(labkit/runtime/kube_api.py), which the tests replace with a fake.
"""

from __future__ import annotations

import copy
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ecommerce.config import DEFAULT_NAMESPACE
from ecommerce.services.registry import SERVICES
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.runtime import k8s_status as ks
from labkit.runtime import manifests as m
from labkit.runtime.k8s_errors import GATEWAY_GROUP, MISSING_GATEWAY_CRDS, ClusterError, explain
from labkit.runtime.kube_api import KubeApi, KubernetesApi
from labkit.runtime.manifests import IMAGE
from labkit.runtime.steps import workload_for

FIELD_MANAGER = "labkit"
GATEWAY_NAME = "labkit-gateway"
GATEWAY_HOST = "api.local"
#: Kinds `down()` deletes besides the manifests' own: Jobs (CronJob runs, `run_job` copies), the
#: StatefulSet's PVCs (which outlive it) and the plugins' ConfigMap (`lab.deploy_code`).
CREATED_KINDS = (("batch/v1", "Job"), ("v1", "PersistentVolumeClaim"), ("v1", "ConfigMap"))
#: Kinds `down()` only waits for: the garbage collector removes them with their owners.
COLLECTED_KINDS = (("apps/v1", "ReplicaSet"), ("v1", "Pod"))
BASE_STEP = "00-base"
#: The ConfigMap holding the deployed plugins (`lab.deploy_code`), one key per file. The lab's
#: Deployments and Jobs mount it at LABKIT_PLUGINS_DIR (optional: absent means no plugins).
PLUGINS_CONFIGMAP = "labkit-plugins"
#: The step whose workloads first mount it (its label, so a student's `down` removes it too).
PLUGINS_STEP = "02-saga"
#: A separate field manager for restarts: a partial apply under FIELD_MANAGER would drop every
#: field of the manifests it does not repeat.
RESTART_FIELD_MANAGER = "labkit-restart"
RESTARTED_AT = "labkit.io/restarted-at"
#: What `doctor()` asks the API server whether you may do in the lab namespace.
REQUIRED_ACCESS = (
    ("create", "apps", "deployments"), ("patch", "apps", "deployments"),
    ("create", "", "services"), ("patch", "", "services"),
    ("create", "batch", "jobs"), ("patch", "batch", "cronjobs"),
    ("create", "networking.k8s.io", "networkpolicies"),
    ("create", GATEWAY_GROUP, "httproutes"),
    ("get", "", "pods/log"), ("delete", "", "pods"),
    # the port-forward websocket is a GET: authorized as get, and from 1.35 as create too
    ("get", "", "pods/portforward"), ("create", "", "pods/portforward"),
    ("patch", "", "configmaps"),  # lab.deploy_code
)
#: ... and in the `testing` namespace (the course's `kubectl exec ... load-tester`).
REQUIRED_TESTING_ACCESS = (("get", "", "pods/exec"), ("create", "", "pods/exec"))


class Check(NamedTuple):
    """One `doctor()` result. `ok` is None when the check could not tell (e.g. no permission)."""

    check: str
    ok: bool | None
    message: str


def _progress(iterable: Iterable[Any], *, total: int, desc: str, enabled: bool) -> Iterator[Any]:
    from labkit.runtime.progress import Progress

    with Progress(total, desc, "objects", enabled=enabled) as bar:  # text: survives a reload
        for item in iterable:
            yield item
            bar.update(1)


def job_from_cronjob(cronjob: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The Job `kubectl create job <name> --from=cronjob/<cronjob>` creates (pure)."""
    meta = cronjob["metadata"]
    template = copy.deepcopy(cronjob["spec"]["jobTemplate"])
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), "labkit.io/run": "manual"}
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": {**(tmeta.get("annotations") or {}),
                            "cronjob.kubernetes.io/instantiate": "manual",
                            m.CREATED_BY: m.CREATED_BY_VALUE},
        },
        "spec": template["spec"],
    }
    if meta.get("uid"):
        job["metadata"]["ownerReferences"] = [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}]
    return job


_SERVER_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid",
                  "batch.kubernetes.io/job-name")


def job_from_job(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A fresh, running copy of a Job (its template without the server-set selector labels)."""
    spec = copy.deepcopy(dict(job["spec"]))
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    spec["suspend"] = False
    tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
    tmeta["labels"] = {k: v for k, v in (tmeta.get("labels") or {}).items()
                       if k not in _SERVER_LABELS}
    meta = job["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _SERVER_LABELS}
    labels["labkit.io/run"] = "manual"
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k == m.CREATED_BY}
    annotations[m.CREATED_BY] = m.CREATED_BY_VALUE
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": labels,
                         "annotations": annotations},
            "spec": spec}


def run_name(base: str, token: str | None = None) -> str:
    """`<base>-manual-<5 chars>`, at most 63 characters (a valid object and label value)."""
    token = token or secrets.token_hex(3)[:5]
    suffix = f"-manual-{token}"
    return base[: 63 - len(suffix)].rstrip("-") + suffix


def parse_selector(selector: str) -> str:
    """A pod name label value (`order-service`) or a label selector (`app=x,tier=y`)."""
    selector = selector.strip()
    if any(c in selector for c in "=!,() "):
        return selector
    return f"{m.NAME_LABEL}={selector}"


def customise(objects: list[dict[str, Any]], *, image: str = IMAGE,
              gateway_class: str | None = None, faults: bool = False) -> list[dict[str, Any]]:
    """Swap the lab image and the Gateway's class in (copies of) the manifests' objects;
    `faults`: LABKIT_FAULTS=1 where the manifests set it to 0 (as manifests/components/faults)."""
    out = copy.deepcopy(objects)
    for obj in out:
        template = m.pod_template(obj)
        for c in ((template.get("spec") or {}).get("containers") or []) if template else []:
            if image != IMAGE and c.get("image") == IMAGE:
                c["image"] = image
            for var in (c.get("env") or []) if faults else []:
                if var.get("name") == "LABKIT_FAULTS":
                    var["value"] = "1"
        if obj["kind"] == "Gateway" and gateway_class:
            obj["spec"]["gatewayClassName"] = gateway_class
    return out


def _match_labels(live: Mapping[str, Any]) -> str | None:
    sel = ((live.get("spec") or {}).get("selector") or {})
    labels = sel.get("matchLabels") or {}
    return m.label_selector_string(labels) if labels else None


def _namespace_of(obj: Mapping[str, Any]) -> str | None:
    if obj["kind"] in m.CLUSTER_SCOPED_KINDS:
        return None
    return (obj.get("metadata") or {}).get("namespace")


class ClusterRuntime:
    """The lab on a Kubernetes cluster (LABKIT_MODE=cluster)."""

    def __init__(self, namespace: str | None = None,
                 kube_client_factory: Callable[[], KubeApi] | None = None, *,
                 image: str | None = None,
                 gateway_class: str | None = None,
                 manifests_root: str | Path | None = None,
                 progress: bool = True,
                 echo: Callable[[str], None] = print,
                 poll_interval: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.namespace = namespace or os.environ.get("LABKIT_NAMESPACE") or DEFAULT_NAMESPACE
        #: The lab image to run (EKS: a registry copy of IMAGE). LABKIT_IMAGE.
        self.image = image or os.environ.get("LABKIT_IMAGE") or IMAGE
        #: The Gateway's class when not kind's cloud-provider-kind. LABKIT_GATEWAY_CLASS.
        self.gateway_class = gateway_class or os.environ.get("LABKIT_GATEWAY_CLASS") or None
        #: Fault injection on (`labkit up --faults`, or LABKIT_FAULTS=1 in your shell).
        self.faults = os.environ.get("LABKIT_FAULTS") == "1"
        self._factory = kube_client_factory or KubernetesApi.from_config
        self._api: KubeApi | None = None
        self.manifests_root = manifests_root
        self.progress = progress
        self.echo = echo
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self._forwards: dict[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def api(self) -> KubeApi:
        if self._api is None:
            try:
                self._api = self._factory()
            except ClusterError:  # already one sentence (e.g. no Kubernetes client installed)
                raise
            except Exception as exc:
                raise ClusterError(explain(exc, action="load your kubeconfig")) from None
        return self._api

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(explain(exc, action=action, namespace=self.namespace,
                                       server=self._server())) from None

    def _server(self) -> str:
        try:
            return self._api.context() if self._api is not None else ""
        except Exception:
            return ""

    def steps(self, steps: str | Sequence[str] | None = None) -> list[str]:
        """Step names from names or unique prefixes (`"02"`, `"02-saga"`); all when None."""
        if steps is None:
            return list(m.STEPS)
        wanted = [steps] if isinstance(steps, str) else list(steps)
        out = []
        for w in wanted:
            hits = [s for s in m.STEPS if s == w or s.startswith(w)]
            if len(hits) != 1:
                raise ClusterError(f"Unknown lab step {w!r}: use one of {', '.join(m.STEPS)}.")
            out.append(hits[0])
        return out

    def objects(self, step: str) -> list[dict[str, Any]]:
        """A step's objects, moved into this runtime's namespace (and image, gateway class)."""
        objs = m.retarget(m.load_step(step, self.manifests_root), self.namespace)
        return customise(objs, image=self.image, gateway_class=self.gateway_class,
                         faults=self.faults)

    def _all_objects(self) -> list[dict[str, Any]]:
        return [o for s in m.STEPS for o in self.objects(s)]

    def _get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        meta = obj.get("metadata") or {}
        return self._call(f"read {m.describe(obj)}", self.api.get, obj["apiVersion"], obj["kind"],
                          meta["name"], _namespace_of(obj))

    # -- up -----------------------------------------------------------------------------------
    def preflight(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Fail before applying anything if the cluster does not serve a kind we need."""
        api = self.api
        self._call("reach the API server", api.server_version)
        seen: set[tuple[str, str]] = set()
        for obj in objects:
            k = (obj["apiVersion"], obj["kind"])
            if k in seen:
                continue
            seen.add(k)
            if not self._call(f"look up {k[1]}", api.has_kind, *k):
                if k[0].startswith(GATEWAY_GROUP):
                    raise ClusterError(MISSING_GATEWAY_CRDS)
                raise ClusterError(f"The cluster does not serve {k[1]} ({k[0]}): install the CRD or "
                                   "controller that provides it, or upgrade the cluster.")

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one object (a changed Job is replaced: its template is immutable)."""
        api, ns = self.api, _namespace_of(obj)
        action = f"apply {m.describe(obj)}"
        try:
            return api.apply(dict(obj), namespace=ns, field_manager=FIELD_MANAGER)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if obj["kind"] == "Job" and status == 422 and "immutable" in str(
                    getattr(exc, "body", "") or exc):
                self._call(f"replace {m.describe(obj)}", api.delete, obj["apiVersion"], "Job",
                           obj["metadata"]["name"], ns, propagation="Foreground")
                self._wait_gone([obj], timeout=120)
                return self._call(action, api.apply, dict(obj), namespace=ns,
                                  field_manager=FIELD_MANAGER)
            raise ClusterError(explain(exc, action=action, namespace=ns or self.namespace,
                                       server=self._server())) from None

    def up(self, steps: str | Sequence[str] | None = None, wait: bool = True,
           timeout: float = 600) -> list[str]:
        """Apply the steps in order (each in plan order), waiting for each step's workloads."""
        chosen = self.steps(steps)
        if BASE_STEP in chosen and not self.may("create", "", "namespaces"):
            # A student: the instructor applied 00-base (namespaces, the Secret, RBAC).
            if not self.base_applied():
                raise ClusterError(f"Namespace {self.namespace} does not exist and you may not "
                                   "create namespaces: ask a cluster admin to apply the base step "
                                   "(`kubectl apply -k manifests/00-base`).")
            chosen.remove(BASE_STEP)
            self.echo(f"{BASE_STEP}: skipped (applied by a cluster admin; you may not create "
                      "namespaces)")
        plans = {s: m.plan(self.objects(s)) for s in chosen}
        self.preflight(o for objs in plans.values() for o in objs)
        self._refuse_foreign_objects(o for objs in plans.values() for o in objs)
        plans = {s: [o for o in objs if not self._foreign_namespace(o)] for s, objs in plans.items()}
        deadline = self._clock() + timeout
        applied: list[str] = []
        for step, objs in plans.items():
            for obj in _progress(objs, total=len(objs), desc=f"apply {step}", enabled=self.progress):
                self.apply(obj)
                applied.append(m.describe(obj))
            if not self.progress:
                self.echo(f"{step}: applied {len(objs)} objects")
            if wait:
                self.wait(objs, timeout=max(1.0, deadline - self._clock()), desc=f"wait {step}")
        return applied

    def _refuse_foreign_objects(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Fail before writing anything if an object the steps would apply already exists and is
        not the lab's (neither labkit's annotation nor its part-of label, which objects of older
        labkit versions carry): server-side apply with force would take it over."""
        groups: dict[tuple[str, str, str | None], set[str]] = {}
        for obj in objects:
            if obj["kind"] != "Namespace":
                key = (obj["apiVersion"], obj["kind"], _namespace_of(obj))
                groups.setdefault(key, set()).add(obj["metadata"]["name"])
        foreign = []
        for (api_version, kind, ns), names in groups.items():
            try:
                live = self.api.list_objects(api_version, kind, ns)
            except Exception:  # not allowed to list (or not served): the apply itself will say
                continue
            for o in live:
                meta = o.get("metadata") or {}
                lab_labelled = (meta.get("labels") or {}).get(m.PART_OF) == m.PART_OF_VALUE
                if meta.get("name") in names and not m.created_by_labkit(o) and not lab_labelled:
                    foreign.append(f"{kind} {ns + '/' if ns else ''}{meta['name']}")
        if foreign:
            raise ClusterError(
                f"{len(foreign)} object(s) the lab would apply already exist and were not created "
                f"by labkit ({', '.join(sorted(foreign)[:6])}{' ...' if len(foreign) > 6 else ''}): "
                "`labkit up` would take them over, so it stops; rename or delete them, or run the "
                "lab in another namespace (LABKIT_NAMESPACE).")

    def _foreign_namespace(self, obj: Mapping[str, Any]) -> bool:
        """A Namespace that exists without labkit's annotation: used as it is, never applied
        (server-side apply with force would take it over, and `down` would then delete it)."""
        if obj["kind"] != "Namespace":
            return False
        live = self._get(obj)
        if live is None or m.created_by_labkit(live):
            return False
        name = obj["metadata"]["name"]
        self.echo(f"namespace {name} already exists and was not created by labkit: using it as it "
                  f"is (not labelled, and `labkit down` never deletes it)")
        return True

    # -- waiting and diagnosis --------------------------------------------------------------------
    def pods_of(self, live: Mapping[str, Any]) -> list[dict[str, Any]]:
        selector = _match_labels(live)
        if not selector:
            return []
        ns = (live.get("metadata") or {}).get("namespace") or self.namespace
        return self._call("list pods", self.api.list_objects, "v1", "Pod", ns, label_selector=selector)

    def events_for(self, live: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
        meta = live.get("metadata") or {}
        ns = meta.get("namespace") or self.namespace
        name = meta.get("name", "")
        names = {p["metadata"]["name"] for p in pods}
        try:
            events = self.api.list_objects("v1", "Event", ns)
        except Exception:  # events are a best-effort explanation
            return []
        out = []
        for e in events:
            obj_name = (e.get("involvedObject") or e.get("regarding") or {}).get("name", "")
            if obj_name == name or obj_name in names or obj_name.startswith(name + "-"):
                out.append(e)
        return out

    def explain_stuck(self, obj: Mapping[str, Any], live: Mapping[str, Any] | None = None
                      ) -> list[str]:
        live = live if live is not None else self._get(obj)
        if live is None:
            return [f"{m.describe(obj)} does not exist"]
        pods = self.pods_of(live)
        return ks.diagnose(pods, self.events_for(live, pods))

    def wait(self, objects: Iterable[Mapping[str, Any]], timeout: float = 600,
             desc: str = "wait") -> None:
        """Wait for Deployments to roll out, StatefulSets to be ready and Jobs to finish."""
        pending = [o for o in objects if ks.waits_for(o)]
        if not pending:
            return
        from labkit.runtime.progress import Progress

        bar = Progress(len(pending), desc, "objects", enabled=self.progress)
        last: dict[str, ks.State] = {}

        def settled() -> bool:
            last.clear()
            for obj in list(pending):
                live = self._get(obj)
                state = ks.workload_state(live)
                if state.done:
                    pending.remove(obj)
                    bar.update(1)
                    continue
                last[m.describe(obj)] = state
                if state.phase == ks.FAILED:
                    raise ClusterError(self._stuck_message(obj, live, state.detail))
                if live is not None:
                    bad = ks.fatal(self.pods_of(live))
                    if bad:
                        raise ClusterError(self._stuck_message(obj, live, "cannot become ready"))
            if pending:
                bar.note(", ".join(o["metadata"]["name"] for o in pending)[:60])
            return not pending

        try:
            wait_until(settled, timeout=timeout, interval=self.poll_interval, clock=self._clock,
                       sleep=self._sleep, what=desc)
        except WaitTimeout:
            lines = [f"Timed out after {timeout:.0f}s waiting for "
                     f"{', '.join(m.describe(o) for o in pending)}:"]
            for obj in pending:
                state = last.get(m.describe(obj))
                lines.append(f"- {m.describe(obj)}: {state.detail if state else ''}")
                lines += ["    " + ln for ln in self.explain_stuck(obj)]
            raise ClusterError("\n".join(lines)) from None
        finally:
            bar.close()

    def _stuck_message(self, obj: Mapping[str, Any], live: Mapping[str, Any] | None,
                       detail: str) -> str:
        lines = [f"{m.describe(obj)} {detail}:"]
        lines += ["  " + ln for ln in self.explain_stuck(obj, live)]
        return "\n".join(lines)

    # -- status, logs, jobs, crashes --------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """One row per workload and the Gateway: step, kind, name, state, detail."""
        rows = []
        for step in m.STEPS:
            for obj in self.objects(step):
                if obj["kind"] not in m.WORKLOAD_KINDS and obj["kind"] != "Gateway":
                    continue
                if obj["kind"] == "Gateway":
                    live = self._get_optional_kind(obj)
                    state = ks.gateway_state(live)
                else:
                    live = self._get(obj)
                    state = ks.workload_state(live)
                rows.append({"step": step, "kind": obj["kind"], "name": obj["metadata"]["name"],
                             "namespace": _namespace_of(obj) or "", "state": state.phase,
                             "detail": state.detail})
        return rows

    def _get_optional_kind(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        if not self._call("look up Gateway API", self.api.has_kind, obj["apiVersion"], obj["kind"]):
            return None
        return self._get(obj)

    def _pods_for_name(self, name: str) -> list[dict[str, Any]]:
        api, ns = self.api, self.namespace
        for api_version, kind in (("batch/v1", "Job"), ("apps/v1", "Deployment"),
                                  ("apps/v1", "StatefulSet")):
            live = self._call(f"read {kind} {name}", api.get, api_version, kind, name, ns)
            if live is not None:
                return self.pods_of(live)
        cron = self._call(f"read CronJob {name}", api.get, "batch/v1", "CronJob", name, ns)
        if cron is not None:
            jobs = [j for j in self._call("list jobs", api.list_objects, "batch/v1", "Job", ns)
                    if any(r.get("kind") == "CronJob" and r.get("name") == name
                           for r in (j.get("metadata") or {}).get("ownerReferences") or [])]
            if not jobs:
                return []
            latest = max(jobs, key=lambda j: j["metadata"].get("creationTimestamp") or "")
            return self.pods_of(latest)
        pods = self._call("list pods", api.list_objects, "v1", "Pod", ns, label_selector=parse_selector(name))
        if pods:
            return pods
        pod = self._call(f"read pod {name}", api.get, "v1", "Pod", name, ns)
        return [pod] if pod else []

    def logs(self, name: str, tail: int = 200, previous: bool = False) -> str:
        """Logs of a Job, Deployment, StatefulSet, CronJob's latest run, pod label or pod."""
        pods = sorted(self._pods_for_name(name),
                      key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if not pods:
            raise ClusterError(f"No pods for {name!r} in namespace {self.namespace}: check the name "
                               "with lab.status() (Jobs' pods are gone after their TTL).")
        chunks = []
        for pod in pods:
            pname = pod["metadata"]["name"]
            for c in (pod.get("spec") or {}).get("containers") or []:
                text = self._call(f"read logs of pod {pname}", self.api.pod_log, pname,
                                  self.namespace, container=c["name"], tail_lines=tail,
                                  previous=previous)
                header = f"==> pod/{pname} ({c['name']}) <=="
                chunks.append(text if len(pods) == 1 and len(pod["spec"]["containers"]) == 1
                              else f"{header}\n{text}")
        return "\n".join(chunks)

    def run_job(self, name: str, wait: bool = True, timeout: float = 600) -> str:
        """Start a run of CronJob or Job `name` (like `kubectl create job --from=cronjob/...`).

        A Job (the saga orchestrator, the suspended replay) is copied from the cluster, or from
        the manifests when its TTL already removed it. Returns the new Job's name.
        """
        api, ns = self.api, self.namespace
        new_name = run_name(name)
        cron = self._call(f"read CronJob {name}", api.get, "batch/v1", "CronJob", name, ns)
        if cron is not None:
            job = job_from_cronjob(cron, new_name)
        else:
            source = self._call(f"read Job {name}", api.get, "batch/v1", "Job", name, ns)
            if source is None:
                source = next((o for o in self._all_objects()
                               if o["kind"] == "Job" and o["metadata"]["name"] == name), None)
            if source is None:
                raise ClusterError(f"No CronJob or Job named {name!r} in namespace {ns} or the "
                                   "manifests: lab.status() lists them.")
            job = job_from_job(source, new_name)
        job["metadata"]["namespace"] = ns
        self._call(f"create Job {new_name}", api.apply, job, namespace=ns,
                   field_manager=FIELD_MANAGER)
        self.echo(f"started job {new_name}")
        if wait:
            self.wait([job], timeout=timeout, desc=new_name)
        return new_name

    def kill(self, selector: str, grace_period_seconds: int = 0) -> list[str]:
        """Delete the pods matching `selector` (a pod name label or a label selector) at once."""
        sel = parse_selector(selector)
        pods = self._call("list pods", self.api.list_objects, "v1", "Pod", self.namespace,
                          label_selector=sel)
        pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") in ("Running", "Pending")]
        if not pods:
            raise ClusterError(f"No running pod matches {sel} in namespace {self.namespace}: "
                               "lab.status() shows what runs.")
        names = []
        for p in pods:
            pname = p["metadata"]["name"]
            self._call(f"delete pod {pname}", self.api.delete, "v1", "Pod", pname, self.namespace,
                       grace_period_seconds=grace_period_seconds)
            names.append(pname)
        return names

    # -- plugins (lab.deploy_code) -------------------------------------------------------------
    def plugin_sources(self) -> dict[str, str]:
        """The deployed plugins: file name (`name.py`) -> source, from the ConfigMap."""
        live = self._call(f"read ConfigMap {PLUGINS_CONFIGMAP}", self.api.get, "v1", "ConfigMap",
                          PLUGINS_CONFIGMAP, self.namespace)
        return dict((live or {}).get("data") or {})

    def set_plugin(self, name: str, source: str | None) -> bool:
        """Write plugin `name` (its source) into the ConfigMap, or remove it (None). Returns
        whether the file was there before."""
        files = self.plugin_sources()
        key = f"{name}.py"
        existed = key in files
        if source is None:
            files.pop(key, None)
        else:
            files[key] = source
        labels = {"app.kubernetes.io/name": PLUGINS_CONFIGMAP,
                  "app.kubernetes.io/component": "plugins",
                  m.PART_OF: m.PART_OF_VALUE, "app.kubernetes.io/managed-by": "labkit",
                  m.STEP_LABEL: PLUGINS_STEP}
        obj = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": PLUGINS_CONFIGMAP, "namespace": self.namespace,
                            "labels": labels, "annotations": {m.CREATED_BY: m.CREATED_BY_VALUE}},
               "data": files}
        self.apply(obj)  # labkit's field manager owns `data`: a key left out is removed
        return existed

    def restart(self, names: Iterable[str], timeout: float = 300) -> list[str]:
        """Roll the Deployments of these processes (like `kubectl rollout restart`), so their
        new pods load the plugins as the ConfigMap holds them now; wait for the rollouts.
        Returns the Deployments restarted (those that run; Jobs load plugins when they start)."""
        wanted = {workload_for(SERVICES[n]) for n in names if n in SERVICES}
        deployments = [o for o in self._all_objects() if o["kind"] == "Deployment"
                       and o["metadata"]["name"] in wanted]
        running = [o for o in deployments if self._get(o) is not None]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for obj in running:
            patch = {"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": obj["metadata"]["name"],
                                  "namespace": _namespace_of(obj)},
                     "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
            self._call(f"restart {m.describe(obj)}", self.api.apply, patch,
                       namespace=_namespace_of(obj), field_manager=RESTART_FIELD_MANAGER)
        self.wait(running, timeout=timeout, desc="restart")
        return [o["metadata"]["name"] for o in running]

    # -- reaching the services ----------------------------------------------------------------
    def gateway_url(self) -> str:
        gw = self._call("read the Gateway", self.api.get, "gateway.networking.k8s.io/v1", "Gateway",
                        GATEWAY_NAME, self.namespace)
        state = ks.gateway_state(gw)
        if state.phase != ks.READY:
            raise ClusterError(f"The Gateway {GATEWAY_NAME} has no address ({state.detail}): run a "
                               "Gateway API implementation (kind: cloud-provider-kind) or use "
                               "lab.url(<service>), which port-forwards.")
        addr = gw["status"]["addresses"][0]["value"]
        return f"http://{addr}"

    def _ready_pod(self, service: str) -> str:
        svc = self._call(f"read Service {service}", self.api.get, "v1", "Service", service,
                         self.namespace)
        if svc is None:
            raise ClusterError(f"No Service {service!r} in namespace {self.namespace}: apply "
                               "01-networking (`labkit up`).")
        selector = m.label_selector_string((svc.get("spec") or {}).get("selector") or {})
        pods = self._call("list pods", self.api.list_objects, "v1", "Pod", self.namespace,
                          label_selector=selector)
        for p in pods:
            conds = {c.get("type"): c.get("status") for c in (p.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True" and not p["metadata"].get("deletionTimestamp"):
                return p["metadata"]["name"]
        raise ClusterError(f"No ready pod behind Service {service}: lab.status() and "
                           f"lab.logs({service!r}) show why.")

    def forward(self, service: str, port: int | None = None) -> tuple[str, int]:
        """A local (host, port) forwarded to `port` of the pods behind Service `service`.

        Each new connection goes to a ready pod, so the forward survives killed pods. The
        default port is the lab's container port (8080); e.g. `forward("postgres", 5432)`.
        """
        from ecommerce.services.registry import CONTAINER_PORT

        target = port or CONTAINER_PORT
        key = f"{service}:{target}"
        if key not in self._forwards:
            from labkit.runtime.portforward import PortForwarder

            pod = self._ready_pod(service)  # fail now, with a clear message, not per request

            def connect() -> Any:
                pod = self._ready_pod(service)
                return self._call(f"port-forward to pod {pod}", self.api.port_forward, pod,
                                  self.namespace, target)

            # Open one tunnel now: a refused websocket (RBAC) is a ClusterError here, not a
            # connection reset on the first request.
            _, close = self._call(f"port-forward to pod {pod}", self.api.port_forward, pod,
                                  self.namespace, target)
            close()
            self._forwards[key] = PortForwarder(connect, http=target == CONTAINER_PORT)
        fwd = self._forwards[key]
        return fwd.host, fwd.port

    def url(self, name: str) -> str:
        """`gateway`: the Gateway's URL. A service: a local port-forward to it (all its paths)."""
        if name == "gateway":
            return self.gateway_url()
        host, port = self.forward(name)
        return f"http://{host}:{port}"

    def http(self, name: str, timeout: float = 10.0) -> Any:
        """An httpx.Client for a service (port-forward) or `gateway` (Host: api.local)."""
        import httpx

        headers = {"Host": GATEWAY_HOST} if name == "gateway" else {}

        def tunnel_error(response: httpx.Response) -> None:
            if response.headers.get("X-Labkit-Error") == "port-forward":
                raise ClusterError(response.read().decode("utf-8", "replace").strip())

        return httpx.Client(base_url=self.url(name), headers=headers, timeout=timeout,
                            event_hooks={"response": [tunnel_error]})

    def close(self) -> None:
        """Stop the port-forwards."""
        for fwd in self._forwards.values():
            fwd.close()
        self._forwards.clear()

    # -- down -----------------------------------------------------------------------------------
    def base_applied(self) -> bool:
        """Whether 00-base is in place: its namespace, or (when namespaces are not readable, as
        for a student) its PostgreSQL Service."""
        try:
            return self.api.get("v1", "Namespace", self.namespace) is not None
        except Exception as exc:
            if getattr(exc, "status", None) != 403:
                raise ClusterError(explain(exc, action=f"read namespace {self.namespace}",
                                           server=self._server())) from None
        return self._call("read Service postgres", self.api.get, "v1", "Service", "postgres",
                          self.namespace) is not None

    def may(self, verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        """SelfSubjectAccessReview; True when the review itself fails (the real call will say)."""
        try:
            return bool(self.api.access_review(verb, group, resource, namespace)[0])
        except ClusterError:
            raise
        except Exception:
            return True

    def _sweep_kinds(self, steps: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Kinds `down()` deletes, in reverse plan order (namespaces excluded)."""
        objs = [o for s in (steps or m.STEPS) for o in self.objects(s)]
        kinds: list[tuple[str, str]] = []
        for obj in reversed(m.plan(objs)):
            k = (obj["apiVersion"], obj["kind"])
            if k not in kinds and obj["kind"] != "Namespace":
                kinds.append(k)
        return kinds + [k for k in CREATED_KINDS if k not in kinds]

    def _namespaces(self, steps: Sequence[str] | None = None) -> list[str]:
        """The namespaces the steps' objects live in (all steps: the lab's and `testing`)."""
        found = {_namespace_of(o) for s in (steps or m.STEPS) for o in self.objects(s)}
        return [ns for ns in (self.namespace, m.TESTING_NAMESPACE) if ns in found]

    def leftovers(self) -> list[str]:
        """Everything with the lab's labels still in the cluster (empty after `down()`)."""
        return self._leftovers([*self._sweep_kinds(), *COLLECTED_KINDS], m.LAB_SELECTOR,
                               self._namespaces(), True)

    def _leftovers(self, kinds: Sequence[tuple[str, str]], selector: str,
                   in_namespaces: Sequence[str], namespaces: bool) -> list[str]:
        left = []
        for api_version, kind in kinds:
            collected = (api_version, kind) in COLLECTED_KINDS  # carry no annotation of ours
            for ns in in_namespaces:
                for o in self._call(f"list {kind}", self.api.list_objects, api_version, kind, ns,
                                    label_selector=selector):
                    if collected or m.created_by_labkit(o):
                        left.append(f"{kind} {ns}/{o['metadata']['name']}")
        if namespaces:
            for o in self._call("list namespaces", self.api.list_objects, "v1", "Namespace",
                                label_selector=selector):
                if o["metadata"]["name"] in in_namespaces and m.created_by_labkit(o):
                    left.append(f"Namespace {o['metadata']['name']}")
        return left

    def down(self, wait: bool = True, timeout: float = 300, keep_namespaces: bool = False) -> list[str]:
        """Delete everything carrying the lab's labels, then its namespaces; wait until gone.

        Idempotent: what is already gone is skipped. Returns what it deleted. Someone who may
        not delete namespaces (a student) removes steps 01-04 and keeps the admin's 00-base.
        """
        api = self.api
        self._call("reach the API server", api.server_version)
        selector = m.LAB_SELECTOR
        steps: list[str] | None = None
        if not keep_namespaces and not self.may("delete", "", "namespaces"):
            steps = [s for s in m.STEPS if s != BASE_STEP]
            keep_namespaces = True
            selector += f",{m.STEP_LABEL} in ({','.join(steps)})"
            self.echo(f"{BASE_STEP} is kept (you may not delete namespaces; a cluster admin "
                      "removes it)")
        kinds = self._sweep_kinds(steps)
        namespaces = self._namespaces(steps)
        deleted: list[str] = []
        skipped: list[str] = []
        for api_version, kind in kinds:
            for ns in namespaces:
                objs = self._call(f"list {kind}", api.list_objects, api_version, kind, ns,
                                  label_selector=selector)
                for o in objs:
                    name = o["metadata"]["name"]
                    if not m.created_by_labkit(o):
                        skipped.append(f"{kind} {ns}/{name}")
                        continue
                    if self._call(f"delete {kind} {name}", api.delete, api_version, kind, name, ns,
                                  propagation="Background"):
                        deleted.append(f"{kind} {ns}/{name}")
        if not keep_namespaces:
            for o in self._call("list namespaces", api.list_objects, "v1", "Namespace",
                                label_selector=selector):
                name = o["metadata"]["name"]
                if name in namespaces and not m.created_by_labkit(o):
                    skipped.append(f"Namespace {name}")
                    continue
                if name in namespaces and self._call(
                        f"delete namespace {name}", api.delete, "v1", "Namespace", name):
                    deleted.append(f"Namespace {name}")
        if wait:
            left: list[str] = []

            def gone() -> bool:
                left[:] = self._leftovers([*kinds, *COLLECTED_KINDS], selector, namespaces,
                                          not keep_namespaces)
                return not left

            try:
                wait_until(gone, timeout=timeout, interval=self.poll_interval, clock=self._clock,
                           sleep=self._sleep, what="the lab's objects to go")
            except WaitTimeout:
                raise ClusterError(f"Timed out after {timeout:.0f}s waiting for the lab's objects "
                                   f"to go: {', '.join(left[:8])}"
                                   f"{' ...' if len(left) > 8 else ''} (a finalizer may be "
                                   "stuck; `kubectl get <kind> <name> -o yaml` shows it).") from None
        if skipped:
            self.echo(f"kept {len(skipped)} object(s) labkit did not create (no {m.CREATED_BY} "
                      f"annotation): {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}")
        self.echo(f"deleted {len(deleted)} objects" if deleted else "nothing to delete")
        return deleted

    def _wait_gone(self, objects: Sequence[Mapping[str, Any]], timeout: float) -> None:
        try:
            wait_until(lambda: all(self._get(o) is None for o in objects), timeout=timeout,
                       interval=self.poll_interval, clock=self._clock, sleep=self._sleep,
                       what="the objects to be deleted")
        except WaitTimeout:
            raise ClusterError(f"Timed out waiting for {', '.join(m.describe(o) for o in objects)} "
                               "to be deleted.") from None

    # -- doctor ---------------------------------------------------------------------------------
    def doctor(self) -> list[Check]:
        """Is this cluster ready for the lab? Stops at the first check that blocks the rest."""
        checks: list[Check] = []
        try:
            api = self.api
        except ClusterError as exc:
            return [Check("kubeconfig", False, exc.message)]
        checks.append(Check("kubeconfig", True, f"context {api.context()}"))
        try:
            version = self._call("reach the API server", api.server_version)
        except ClusterError as exc:
            return [*checks, Check("api server", False, exc.message)]
        checks.append(Check("api server", True, f"Kubernetes {version}"))
        checks.append(self._check_namespace(api))
        checks.append(self._check_access(api))
        checks.append(self._check_gateway_api(api))
        checks += self._check_nodes(api)
        return checks

    def _check_namespace(self, api: KubeApi) -> Check:
        try:
            exists = self.base_applied()
        except ClusterError as exc:
            return Check("namespace", None, exc.message)
        if exists:
            return Check("namespace", True, f"{self.namespace} exists")
        try:
            can_create, _ = api.access_review("create", "", "namespaces", None)
        except Exception:
            can_create = False
        if can_create:
            return Check("namespace", True, f"{self.namespace} does not exist yet; `labkit up` "
                                            "creates it (you may create namespaces)")
        return Check("namespace", False, f"Namespace {self.namespace} does not exist and you may "
                                         "not create namespaces: ask a cluster admin to apply the "
                                         "base step (`kubectl apply -k manifests/00-base`).")

    def _check_access(self, api: KubeApi) -> Check:
        denied = []
        wanted = [(*a, self.namespace) for a in REQUIRED_ACCESS] + [
            (*a, m.TESTING_NAMESPACE) for a in REQUIRED_TESTING_ACCESS]
        try:
            for verb, group, resource, ns in wanted:
                ok, _ = api.access_review(verb, group, resource, ns)
                if not ok:
                    denied.append(f"{verb} {resource}"
                                  + (f" (in {ns})" if ns != self.namespace else ""))
        except Exception as exc:
            return Check("permissions", None, "could not ask the API server (SelfSubjectAccessReview): "
                                              + explain(exc, action="review access"))
        if denied:
            return Check("permissions", False,
                         f"You may not {', '.join(denied)} in namespace {self.namespace}: ask your "
                         "instructor to bind the labkit-student Role (manifests/00-base/rbac.yaml) "
                         "to you, or use an admin context.")
        return Check("permissions", True, f"you may apply, read logs, port-forward and delete pods "
                                          f"in {self.namespace}, and exec in "
                                          f"{m.TESTING_NAMESPACE}")

    def _check_gateway_api(self, api: KubeApi) -> Check:
        try:
            served = all(api.has_kind("gateway.networking.k8s.io/v1", k) for k in ("Gateway",
                                                                                   "HTTPRoute"))
        except Exception as exc:
            return Check("gateway api", None, explain(exc, action="look up the Gateway API"))
        if not served:
            return Check("gateway api", False, MISSING_GATEWAY_CRDS)
        gw = next((o for o in self.objects("01-networking") if o["kind"] == "Gateway"), None)
        cls = ((gw or {}).get("spec") or {}).get("gatewayClassName", "")
        try:
            classes = {o["metadata"]["name"] for o in api.list_objects("gateway.networking.k8s.io/v1",
                                                               "GatewayClass")}
        except Exception:
            return Check("gateway api", True, "Gateway API CRDs installed (GatewayClasses not "
                                              "readable with your permissions)")
        if cls and cls not in classes:
            return Check("gateway api", False,
                         f"No GatewayClass {cls!r} (found: {', '.join(sorted(classes)) or 'none'}): "
                         "run cloud-provider-kind on kind, or set gatewayClassName in "
                         "manifests/01-networking/gateway.yaml to your implementation's class.")
        return Check("gateway api", True, f"Gateway API CRDs and GatewayClass {cls} present")

    def _check_nodes(self, api: KubeApi) -> list[Check]:
        try:
            nodes = api.list_objects("v1", "Node")
        except Exception:
            return [Check("image", None, f"could not list nodes (permissions) to look for {IMAGE}")]
        return [check_image_on_nodes(nodes, self.image),
                check_gateway_cidr(nodes, self.objects("01-networking"))]


def _image_names(node: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for img in (node.get("status") or {}).get("images") or []:
        for n in img.get("names") or []:
            names.add(n)
            names.add(n.split("/")[-1])
    return names


def check_image_on_nodes(nodes: Sequence[Mapping[str, Any]], image: str = IMAGE) -> Check:
    """Is the lab image on every node (kind load / minikube image load put it there)?"""
    if image != IMAGE:
        return Check("image", None, f"{image} is pulled from its registry by the nodes")
    if not nodes:
        return Check("image", None, "no nodes listed")
    if not any((n.get("status") or {}).get("images") for n in nodes):
        return Check("image", None, f"the nodes do not report their images; cannot tell if {IMAGE} "
                                    "is there")
    missing = [n["metadata"]["name"] for n in nodes if IMAGE not in _image_names(n)]
    if missing:
        return Check("image", False, f"{IMAGE} is not on node(s) {', '.join(missing)}: run `labkit "
                                     "image build --kind <cluster>` (kind) or `minikube image load "
                                     f"{IMAGE}`.")
    return Check("image", True, f"{IMAGE} is on all {len(nodes)} nodes")


def check_gateway_cidr(nodes: Sequence[Mapping[str, Any]],
                       objects: Sequence[Mapping[str, Any]]) -> Check:
    """cloud-provider-kind's Envoy reaches pods from the node network: is it allowed?"""
    import ipaddress

    gw = next((o for o in objects if o["kind"] == "Gateway"), None)
    if gw is None or gw["spec"].get("gatewayClassName") != "cloud-provider-kind":
        return Check("gateway network", True, "not using cloud-provider-kind")
    cidrs = [ipaddress.ip_network(peer["ipBlock"]["cidr"])
             for o in objects if o["kind"] == "NetworkPolicy"
             for rule in o["spec"].get("ingress") or [] for peer in rule.get("from") or []
             if "ipBlock" in peer]
    outside = []
    for n in nodes:
        for a in (n.get("status") or {}).get("addresses") or []:
            if a.get("type") != "InternalIP":
                continue
            ip = ipaddress.ip_address(a["address"])
            if not any(ip in c for c in cidrs if c.version == ip.version):
                outside.append(f"{n['metadata']['name']} {ip}")
    if outside:
        return Check("gateway network", False,
                     f"node address(es) {', '.join(outside)} are outside the NetworkPolicies' "
                     f"gateway ipBlock ({', '.join(map(str, cidrs))}): change the cidr in "
                     "manifests/01-networking/networkpolicies.yaml to your kind network "
                     "(`docker network inspect kind`).")
    return Check("gateway network", True, "the gateway ipBlock covers every node address")
