"""Readiness of workloads and why pods are stuck: pure functions over API objects as dicts.

`workload_state()` follows `kubectl rollout status` (Deployments, StatefulSets) and Job
conditions. `diagnose()` turns pods and events into lines a student can act on: image pull
errors, crash loops, unschedulable pods, failing probes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.runtime.manifests import IMAGE

READY, PROGRESSING, FAILED, SUSPENDED, MISSING = "ready", "progressing", "failed", "suspended", "missing"
#: Waiting reasons that never fix themselves while we wait.
FATAL_WAITING = {"ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError"}
IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff"}
#: Restarts after which a CrashLoopBackOff during `up` counts as a failure.
CRASH_LOOP_LIMIT = 3


@dataclass(frozen=True)
class State:
    phase: str  # READY, PROGRESSING, FAILED, SUSPENDED, MISSING
    detail: str

    @property
    def done(self) -> bool:
        return self.phase in (READY, SUSPENDED)


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def deployment_state(d: Mapping[str, Any]) -> State:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    meta = d.get("metadata") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return State(PROGRESSING, "waiting for the controller to see the new spec")
    cond = _conditions(d).get("Progressing")
    if cond and cond.get("reason") == "ProgressDeadlineExceeded":
        return State(FAILED, f"rollout exceeded its progress deadline: {cond.get('message', '')}")
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < want:
        return State(PROGRESSING, f"{updated}/{want} replicas updated")
    if total > updated:
        return State(PROGRESSING, f"{total - updated} old replica(s) terminating")
    if available < updated:
        return State(PROGRESSING, f"{available}/{want} replicas available")
    return State(READY, f"{available}/{want} available")


def statefulset_state(s: Mapping[str, Any]) -> State:
    spec, status = s.get("spec") or {}, s.get("status") or {}
    meta = s.get("metadata") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return State(PROGRESSING, "waiting for the controller to see the new spec")
    ready = status.get("readyReplicas", 0)
    if ready < want:
        return State(PROGRESSING, f"{ready}/{want} ready")
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return State(PROGRESSING, f"{status.get('updatedReplicas', 0)}/{want} updated")
    return State(READY, f"{ready}/{want} ready")


def job_state(j: Mapping[str, Any]) -> State:
    spec, status = j.get("spec") or {}, j.get("status") or {}
    conds = _conditions(j)
    if conds.get("Complete", {}).get("status") == "True":
        return State(READY, f"complete ({status.get('succeeded', 0)} succeeded)")
    if conds.get("Failed", {}).get("status") == "True":
        c = conds["Failed"]
        return State(FAILED, f"failed: {c.get('reason', '')} {c.get('message', '')}".strip())
    if spec.get("suspend"):
        return State(SUSPENDED, "suspended (start it with lab.run_job)")
    return State(PROGRESSING, f"{status.get('active', 0)} active, {status.get('failed', 0)} failed")


def workload_state(obj: Mapping[str, Any] | None) -> State:
    if obj is None:
        return State(MISSING, "not found")
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_state(obj)
    if kind == "StatefulSet":
        return statefulset_state(obj)
    if kind == "Job":
        return job_state(obj)
    if kind == "CronJob":
        spec = obj.get("spec") or {}
        last = (obj.get("status") or {}).get("lastScheduleTime")
        if spec.get("suspend"):
            return State(SUSPENDED, "suspended")
        return State(READY, f"schedule {spec.get('schedule')}, last run {last or 'never'}")
    return State(READY, "applied")


def waits_for(obj: Mapping[str, Any]) -> bool:
    """Whether `up(wait=True)` waits for this object."""
    return obj.get("kind") in ("Deployment", "StatefulSet", "Job")


# --- why pods are stuck ----------------------------------------------------------------------

def _is_lab_image(image: str) -> bool:
    name = image.split("@")[0].rsplit(":", 1)[0]
    return name.split("/")[-1] == IMAGE.split(":")[0]


def hint(reason: str, image: str = "", message: str = "") -> str:
    """What to do about a container's waiting/terminated reason."""
    if reason in IMAGE_PULL or reason == "ErrImageNeverPull":
        if _is_lab_image(image):
            return (f"the image {image} is not on the nodes: build and load it with `labkit image "
                    f"build --kind <cluster>` (kind) or `minikube image load {IMAGE}` (minikube); "
                    "on EKS push it to a registry and point the manifests at it")
        return (f"the node cannot pull {image}: check the node's internet access or registry "
                "credentials, and that the tag exists")
    if reason == "InvalidImageName":
        return f"{image} is not a valid image reference"
    if reason == "CrashLoopBackOff":
        return ("the process keeps exiting: read its logs with lab.logs(<name>) (previous=True "
                "for the crashed run)")
    if reason == "CreateContainerConfigError":
        return (f"the container's configuration is incomplete ({message}); a Secret or key it "
                "references may be missing")
    if reason == "OOMKilled":
        return "it ran out of memory: raise resources.limits.memory"
    if reason == "Error":
        return "it exited with an error: read its logs with lab.logs(<name>)"
    return message


def _ts(obj: Mapping[str, Any]) -> str:
    return str(obj.get("lastTimestamp") or obj.get("eventTime")
               or (obj.get("metadata") or {}).get("creationTimestamp") or "")


def pod_problems(pod: Mapping[str, Any]) -> list[str]:
    """Lines explaining why one pod is not ready (empty when it is)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    name = meta.get("name", "?")
    phase = status.get("phase", "Unknown")
    images = {c.get("name"): c.get("image", "") for c in spec.get("containers") or []}
    lines: list[str] = []
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conds.get("PodScheduled")
    if phase == "Pending" and sched and sched.get("status") == "False":
        lines.append(f"pod {name}: Pending, not scheduled ({sched.get('reason', '')}): "
                     f"{sched.get('message', '')}".rstrip(": "))
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    for cs in statuses:
        cname = cs.get("name", "?")
        state = cs.get("state") or {}
        image = cs.get("image") or images.get(cname, "")
        restarts = cs.get("restartCount", 0)
        if "waiting" in state:
            w = state["waiting"] or {}
            reason = w.get("reason", "Waiting")
            if reason in ("ContainerCreating", "PodInitializing"):
                lines.append(f"pod {name} container {cname}: {reason}")
                continue
            extra = ""
            last = (cs.get("lastState") or {}).get("terminated")
            if reason == "CrashLoopBackOff" and last:
                extra = (f" (restarts {restarts}; last exit {last.get('exitCode')} "
                         f"{last.get('reason', '')})")
                if last.get("reason") == "OOMKilled":
                    reason_hint = hint("OOMKilled", image)
                    lines.append(f"pod {name} container {cname}: {reason}{extra}: {reason_hint}")
                    continue
            lines.append(f"pod {name} container {cname}: {reason}{extra}: "
                         f"{hint(reason, image, w.get('message', ''))}".rstrip(": "))
        elif "terminated" in state:
            t = state["terminated"] or {}
            if t.get("exitCode", 0) != 0:
                lines.append(f"pod {name} container {cname}: exited {t.get('exitCode')} "
                             f"({t.get('reason', '')}): {hint(t.get('reason', 'Error'), image)}")
        elif "running" in state and not cs.get("ready", False) and phase == "Running":
            lines.append(f"pod {name} container {cname}: running but not ready (its readiness probe "
                         "fails; see the Unhealthy events and its logs)")
    if not lines and phase not in ("Running", "Succeeded"):
        reason = status.get("reason") or ""
        lines.append(f"pod {name}: {phase} {reason} {status.get('message', '')}".strip())
    return lines


def fatal(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems that will not fix themselves by waiting (fail fast instead of timing out)."""
    out = []
    for pod in pods:
        spec = pod.get("spec") or {}
        images = {c.get("name"): c.get("image", "") for c in spec.get("containers") or []}
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            w = (cs.get("state") or {}).get("waiting") or {}
            reason = w.get("reason", "")
            image = cs.get("image") or images.get(cs.get("name"), "")
            if reason in FATAL_WAITING or (reason in IMAGE_PULL and _is_lab_image(image)) or (
                    reason == "CrashLoopBackOff" and cs.get("restartCount", 0) >= CRASH_LOOP_LIMIT):
                out += pod_problems(pod)
                break
    return out


def recent_events(events: Iterable[Mapping[str, Any]], limit: int = 8) -> list[str]:
    """Warning events first, newest first, repeated ones counted once."""
    evs = sorted(events, key=_ts, reverse=True)
    evs.sort(key=lambda e: e.get("type") != "Warning")
    lines, seen = [], set()
    for e in evs:
        obj = e.get("involvedObject") or e.get("regarding") or {}
        text = (e.get("message") or e.get("note") or "").strip()
        k = (obj.get("name"), e.get("reason"), text)
        if k in seen:
            continue
        seen.add(k)
        count = e.get("count") or 1
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"{e.get('type', 'Normal')} {e.get('reason', '')} "
                     f"{(obj.get('kind') or '').lower()}/{obj.get('name', '?')}: {text}{times}")
        if len(lines) >= limit:
            break
    return lines


def diagnose(pods: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """Pod phases, container states and recent events that explain a stuck workload."""
    pods = list(pods)
    lines: list[str] = []
    if not pods:
        lines.append("no pods were created (check the events below: quota, admission, a missing "
                     "ServiceAccount or a Pod Security violation)")
    for pod in pods:
        lines += pod_problems(pod)
    ev = recent_events(events)
    if ev:
        lines.append("recent events:")
        lines += ["  " + e for e in ev]
    return lines


def gateway_state(gw: Mapping[str, Any] | None) -> State:
    """A Gateway is ready once its implementation programmed it and gave it an address."""
    if gw is None:
        return State(MISSING, "not found")
    conds = _conditions(gw)
    addresses = [a.get("value") for a in (gw.get("status") or {}).get("addresses") or []]
    programmed = conds.get("Programmed", {})
    if programmed.get("status") == "True" and addresses:
        return State(READY, f"address {addresses[0]}")
    accepted = conds.get("Accepted", {})
    if accepted.get("status") == "False":
        why = f"{accepted.get('reason', '')} {accepted.get('message', '')}".strip()
        return State(FAILED, f"not accepted: {why}")
    if not conds:
        return State(PROGRESSING, "no Gateway implementation has picked it up yet (is its "
                                  "controller, e.g. cloud-provider-kind, running?)")
    return State(PROGRESSING, f"{programmed.get('reason', 'not programmed yet')} "
                              f"{programmed.get('message', '')}".strip())
