"""ClusterRuntime against a fake Kubernetes API that records every call (no cluster here).

The fake stores objects as dicts, reports them ready (or stuck, when a test says so), and
implements label-selector lists and deletes. What is tested is the runtime's logic: plan order,
explicit namespaces, idempotent apply, waits and their diagnosis, cleanup by labels, jobs,
kills, port-forwarding and the one-sentence errors.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from typing import Any

import httpx
import pytest

from labkit.ops.image import IMAGE
from labkit.runtime import manifests as m
from labkit.runtime.cluster import (
    ClusterRuntime,
    check_gateway_cidr,
    check_image_on_nodes,
    job_from_cronjob,
    job_from_job,
    parse_selector,
    run_name,
)
from labkit.runtime.k8s_errors import MISSING_GATEWAY_CRDS, NO_KUBECONFIG, ClusterError

N_OBJECTS = sum(len(objs) for objs in m.load_all().values())


class ResourceNotFoundError(Exception):
    """Named like kubernetes.dynamic.exceptions.ResourceNotFoundError."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"kind": "Status", "message": message})


class MaxRetryError(Exception):
    """Named like urllib3's: the API server did not answer."""


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality (`k=v`) and set (`k in (a,b)`) requirements, comma-separated."""
    if not selector:
        return True
    for req in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        req = req.strip()
        if " in (" in req:
            k, values = req.split(" in (", 1)
            if labels.get(k.strip()) not in values.rstrip(")").split(","):
                return False
        else:
            k, v = req.split("=", 1)
            if labels.get(k) != v:
                return False
    return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ready_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind, spec = obj["kind"], obj.get("spec") or {}
    gen = obj["metadata"]["generation"]
    if kind == "Deployment":
        r = spec.get("replicas", 1)
        return {"observedGeneration": gen, "replicas": r, "updatedReplicas": r,
                "availableReplicas": r, "readyReplicas": r}
    if kind == "StatefulSet":
        return {"observedGeneration": gen, "readyReplicas": spec.get("replicas", 1),
                "currentRevision": "r1", "updateRevision": "r1"}
    if kind == "Job" and not spec.get("suspend"):
        return {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    if kind == "Gateway":
        return {"addresses": [{"type": "IPAddress", "value": "172.18.0.9"}],
                "conditions": [{"type": "Programmed", "status": "True"}]}
    return None


class FakeApi:
    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.missing_kinds: set[str] = set()
        self.healthy = True
        self.unreachable = False
        self.denied: set[tuple[str, str]] = set()
        self.forbidden_apply: set[str] = set()
        self.forbidden_get: set[str] = set()
        self.forbidden_namespaces: set[str] = set()  # lists there are refused
        self.stuck: dict[str, dict[str, Any]] = {}  # workload name -> status to report
        self.delete_lag = 0  # list() calls for which deleted objects still show
        self._dying: dict[tuple[str, str, str], list[Any]] = {}
        self.logs: dict[str, str] = {}
        self.nodes = [node("labkit-control-plane", "172.18.0.2", [IMAGE]),
                      node("labkit-worker", "172.18.0.3", [IMAGE])]
        self._uid = 0

    # -- KubeApi ------------------------------------------------------------------------------
    def context(self) -> str:
        return "kind-labkit (https://127.0.0.1:6443)"

    def server_version(self) -> str:
        self.calls.append(("version",))
        if self.unreachable:
            raise MaxRetryError("HTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries")
        return "v1.33.1"

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind not in self.missing_kinds

    def apply(self, obj, *, namespace, field_manager):
        obj = copy.deepcopy(obj)
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.calls.append(("apply", kind, namespace, name, field_manager))
        if kind in self.missing_kinds:
            raise ResourceNotFoundError(
                f"No matches found for {{'api_version': '{obj['apiVersion']}', 'kind': '{kind}'}}")
        if kind in self.forbidden_apply:
            raise ApiError(403, f'{kind.lower()}s "{name}" is forbidden: User "student" cannot '
                                f'patch resource in namespace "{namespace}"')
        if namespace is not None:
            obj["metadata"]["namespace"] = namespace
        key = (kind, namespace or "", name)
        old = self.store.get(key)
        if old is None:
            self._uid += 1
            obj["metadata"]["uid"] = f"uid-{self._uid}"
            obj["metadata"]["generation"] = 1
            obj["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{self._uid:02d}Z"
        else:
            obj["metadata"]["uid"] = old["metadata"]["uid"]
            obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        if kind == "Job":  # server-set fields, kept across applies as server-side apply does
            obj["spec"]["selector"] = {"matchLabels": {
                "batch.kubernetes.io/controller-uid": obj["metadata"]["uid"]}}
            tl = obj["spec"]["template"]["metadata"].setdefault("labels", {})
            tl["batch.kubernetes.io/controller-uid"] = obj["metadata"]["uid"]
            tl["batch.kubernetes.io/job-name"] = name
        if old is not None:
            changed = old.get("spec") != obj.get("spec")
            obj["metadata"]["generation"] = old["metadata"]["generation"] + int(changed)
        status = self.stuck.get(name) or (ready_status(obj) if self.healthy else None)
        if status is not None:
            obj["status"] = status
        self.store[key] = obj
        return copy.deepcopy(obj)

    def get(self, api_version, kind, name, namespace=None):
        self.calls.append(("get", kind, namespace, name))
        if self.unreachable:
            raise MaxRetryError("unreachable")
        if kind in self.forbidden_get:
            raise ApiError(403, f'{kind.lower()}s "{name}" is forbidden: User "student" cannot get '
                                f'resource "{kind.lower()}s" at the cluster scope')
        obj = self.store.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, api_version, kind, namespace=None, *, label_selector=None, field_selector=None):
        self.calls.append(("list", kind, namespace, label_selector))
        if namespace in self.forbidden_namespaces:
            raise ApiError(403, f'{kind.lower()}s is forbidden: User "student" cannot list '
                                f'resource "{kind.lower()}s" in the namespace "{namespace}"')
        if kind == "Node":
            return copy.deepcopy(self.nodes)
        if kind in self.missing_kinds:
            return []
        out = []
        for (k, ns, _), obj in self.store.items():
            if k != kind or (namespace is not None and ns != namespace):
                continue
            if selector_matches(label_selector, obj["metadata"].get("labels") or {}):
                out.append(copy.deepcopy(obj))
        for key, (obj, left) in list(self._dying.items()):
            if key[0] != kind or (namespace is not None and key[1] != namespace):
                continue
            if selector_matches(label_selector, obj["metadata"].get("labels") or {}):
                out.append(copy.deepcopy(obj))
            if left <= 1:
                del self._dying[key]
            else:
                self._dying[key][1] = left - 1
        return out

    def delete(self, api_version, kind, name, namespace=None, *, grace_period_seconds=None,
               propagation="Background"):
        self.calls.append(("delete", kind, namespace, name, grace_period_seconds))
        key = (kind, namespace or "", name)
        obj = self.store.pop(key, None)
        if obj is None:
            return False
        if self.delete_lag:
            self._dying[key] = [obj, self.delete_lag]
        if kind == "Namespace":
            for k in [k for k in self.store if k[1] == name]:
                del self.store[k]
        return True

    def pod_log(self, name, namespace, *, container=None, tail_lines=None, previous=False):
        self.calls.append(("log", name, container, tail_lines, previous))
        return self.logs.get(name, f"log of {name}")

    def access_review(self, verb, group, resource, namespace):
        return (verb, resource) not in self.denied, ""

    def port_forward(self, pod, namespace, port):
        self.calls.append(("port_forward", pod, namespace, port))
        ours, theirs = socket.socketpair()
        threading.Thread(target=tiny_http_server, args=(theirs, pod), daemon=True).start()
        return ours, ours.close

    # -- helpers for tests --------------------------------------------------------------------
    def add_pod(self, name: str, labels: dict[str, str], status: dict[str, Any],
                namespace: str = "ecommerce-microservices", image: str = IMAGE) -> None:
        self.store[("Pod", namespace, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "creationTimestamp": "2026-01-01T00:01:00Z"},
            "spec": {"containers": [{"name": "main", "image": image}]},
            "status": status}

    def add_event(self, name: str, involved: str, reason: str, message: str,
                  namespace: str = "ecommerce-microservices", kind: str = "Pod") -> None:
        self.store[("Event", namespace, name)] = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
            "type": "Warning", "reason": reason, "message": message, "count": 3,
            "involvedObject": {"kind": kind, "name": involved},
            "lastTimestamp": "2026-01-01T00:02:00Z"}

    def applied(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "apply"]


def node(name: str, ip: str, images: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "images": [{"names": [f"docker.io/library/{i}"]} for i in images]}}


def tiny_http_server(sock: socket.socket, pod: str) -> None:
    """Answers one HTTP request on `sock` with the pod's name."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return
        data += chunk
    body = json.dumps({"pod": pod, "path": data.split(b" ")[1].decode()}).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.close()


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def runtime(fake: FakeApi, clock: FakeClock, **kw: Any) -> ClusterRuntime:
    return ClusterRuntime(kube_client_factory=lambda: fake, progress=False, echo=lambda s: None,
                          sleep=clock.sleep, clock=clock, **kw)


# --- up ---------------------------------------------------------------------------------------

def test_up_applies_every_step_in_plan_order_with_labkit_as_field_manager(fake, clock):
    rt = runtime(fake, clock)
    applied = rt.up()
    assert len(applied) == N_OBJECTS
    calls = fake.applied()
    assert {c[4] for c in calls} == {"labkit"}
    for step in m.STEPS:  # within each step, the plan's order
        names = {(o["kind"], o["metadata"]["name"]) for o in m.load_step(step)}
        step_calls = [c for c in calls if (c[1], c[3]) in names]
        ranks = [m.kind_rank(c[1]) for c in step_calls]
        assert ranks == sorted(ranks), step
    assert calls[0][:4] == ("apply", "Namespace", None, "ecommerce-microservices")
    # The namespace is set explicitly on every namespaced object.
    assert all(c[2] in ("ecommerce-microservices", "testing") for c in calls if c[1] != "Namespace")
    assert ("apply", "Deployment", "testing", "load-tester", "labkit") in calls


def test_up_is_idempotent(fake, clock):
    rt = runtime(fake, clock)
    rt.up()
    before = copy.deepcopy(fake.store)
    rt.up()
    assert fake.store == before  # same objects, same generations: nothing changed
    assert len(fake.applied()) == 2 * N_OBJECTS
    assert not [c for c in fake.calls if c[0] == "delete"]


def test_up_can_target_another_namespace(fake, clock):
    rt = runtime(fake, clock, namespace="lab-7")
    rt.up(["00", "01-networking"])
    namespaces = {k[1] for k in fake.store if k[0] != "Namespace"}
    assert namespaces == {"lab-7", "testing"}
    binding = fake.store[("RoleBinding", "testing", "labkit-student-load-tester")]
    assert binding["subjects"][0]["namespace"] == "lab-7"


def test_up_of_one_step_and_unknown_steps(fake, clock):
    rt = runtime(fake, clock)
    rt.up("03-cqrs")
    assert {c[3] for c in fake.applied()} == {"command-service", "query-service"}
    with pytest.raises(ClusterError, match="Unknown lab step '09'"):
        rt.up("09")


def test_a_changed_job_is_replaced_because_its_template_is_immutable(fake, clock):
    rt = runtime(fake, clock)
    rt.up("02")
    real_apply = fake.apply

    def apply(obj, *, namespace, field_manager):
        old = fake.store.get((obj["kind"], namespace or "", obj["metadata"]["name"]))
        if obj["kind"] == "Job" and old is not None and \
                old["spec"]["template"]["spec"] != obj["spec"]["template"]["spec"]:
            raise ApiError(422, 'Job.batch "saga-orchestrator" is invalid: spec.template: '
                                "Invalid value: field is immutable")
        return real_apply(obj, namespace=namespace, field_manager=field_manager)

    fake.apply = apply  # type: ignore[method-assign]
    rt.image = "labkit:0.2.0"
    rt.up("02")
    deletes = [c for c in fake.calls if c[0] == "delete"]
    assert deletes == [("delete", "Job", "ecommerce-microservices", "saga-orchestrator", None)]
    job = fake.store[("Job", "ecommerce-microservices", "saga-orchestrator")]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "labkit:0.2.0"


def test_a_missing_gateway_api_fails_before_anything_is_applied(fake, clock):
    fake.missing_kinds = {"Gateway", "HTTPRoute"}
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up()
    assert err.value.message == MISSING_GATEWAY_CRDS
    assert fake.applied() == []


def test_waiting_counts_ready_and_suspended_workloads_as_done(fake, clock):
    rt = runtime(fake, clock)
    rt.up("04-event-sourcing")
    replay = fake.store[("Job", "ecommerce-microservices", "event-replay")]
    assert replay["spec"]["suspend"] is True and "status" not in replay
    assert clock.now == 0  # no sleeping: everything was ready or suspended at once


# --- waiting and diagnosis --------------------------------------------------------------------

def stuck_deployment(fake: FakeApi, name: str, pod_status: dict[str, Any]) -> None:
    replicas = {"query-service": 3, "command-service": 2}.get(name, 1)
    fake.stuck[name] = {"observedGeneration": 1, "replicas": replicas,
                        "updatedReplicas": replicas, "availableReplicas": 0}
    fake.add_pod(f"{name}-7d9c-x1", {"app.kubernetes.io/name": name,
                                      "app.kubernetes.io/component": "service"}, pod_status)


def test_an_image_that_is_not_on_the_nodes_fails_fast_with_what_to_do(fake, clock):
    stuck_deployment(fake, "order-service", {"phase": "Pending", "containerStatuses": [{
        "name": "order-service", "image": IMAGE, "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                              "message": f'Back-off pulling image "{IMAGE}"'}}}]})
    fake.add_event("e1", "order-service-7d9c-x1", "Failed",
                   f'Failed to pull image "{IMAGE}": pull access denied')
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up(["00", "01", "02"])
    msg = err.value.message
    assert msg.startswith("Deployment ecommerce-microservices/order-service cannot become ready:")
    assert "container order-service: ImagePullBackOff" in msg
    assert "labkit image build --kind <cluster>" in msg
    assert "Warning Failed pod/order-service-7d9c-x1: Failed to pull image" in msg
    assert clock.now < 10  # failed fast, did not wait for the timeout


def test_a_crash_loop_fails_fast_and_points_at_the_logs(fake, clock):
    stuck_deployment(fake, "command-service", {"phase": "Running", "containerStatuses": [{
        "name": "command-service", "image": IMAGE, "ready": False, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]})
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up("03")
    assert "CrashLoopBackOff (restarts 4; last exit 1 Error)" in err.value.message
    assert "lab.logs(<name>)" in err.value.message


def test_a_timeout_shows_pending_scheduling_and_events(fake, clock):
    stuck_deployment(fake, "query-service", {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."}]})
    fake.add_event("e2", "query-service-7d9c-x1", "FailedScheduling",
                   "0/3 nodes are available: 3 Insufficient memory.")
    fake.add_event("e3", "unrelated-pod", "BackOff", "not about us")
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up("03", timeout=30)
    msg = err.value.message
    assert msg.startswith("Timed out after 30s waiting for Deployment ecommerce-microservices/"
                          "query-service:")
    assert "- Deployment ecommerce-microservices/query-service: 0/3 replicas available" in msg
    assert "Pending, not scheduled (Unschedulable): 0/3 nodes are available" in msg
    assert "FailedScheduling" in msg and "unrelated-pod" not in msg
    assert clock.now >= 30


def test_a_failed_job_is_reported_with_its_pods(fake, clock):
    fake.stuck["saga-orchestrator"] = {"failed": 4, "conditions": [{
        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit"}]}
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up("02-saga")
    assert "Job ecommerce-microservices/saga-orchestrator failed: BackoffLimitExceeded" in \
        err.value.message


# --- status, logs, jobs, kill ---------------------------------------------------------------------

def test_status_lists_workloads_and_the_gateway(fake, clock):
    rt = runtime(fake, clock)
    rows = rt.status()
    assert {r["state"] for r in rows} == {"missing"}
    rt.up()
    rows = {(r["kind"], r["name"]): r for r in rt.status()}
    assert rows[("Deployment", "query-service")]["detail"] == "3/3 available"
    assert rows[("Gateway", "labkit-gateway")]["detail"] == "address 172.18.0.9"
    assert rows[("Job", "event-replay")]["state"] == "suspended"
    assert rows[("CronJob", "event-processor")]["state"] == "ready"


def test_logs_of_a_job_and_of_a_deployment(fake, clock):
    rt = runtime(fake, clock)
    rt.up("02")
    job = fake.store[("Job", "ecommerce-microservices", "saga-orchestrator")]
    fake.add_pod("saga-orchestrator-abcde", job["spec"]["template"]["metadata"]["labels"],
                 {"phase": "Succeeded"})
    fake.logs["saga-orchestrator-abcde"] = "saga s-1 completed"
    assert rt.logs("saga-orchestrator", tail=50) == "saga s-1 completed"
    assert ("log", "saga-orchestrator-abcde", "main", 50, False) in fake.calls
    for i in (1, 2):
        fake.add_pod(f"payment-service-{i}", {"app.kubernetes.io/name": "payment-service",
                                              "app.kubernetes.io/component": "service"},
                     {"phase": "Running"})
    text = rt.logs("payment-service")
    assert "==> pod/payment-service-1 (main) <==" in text and "log of payment-service-2" in text
    with pytest.raises(ClusterError, match="No pods for 'nope'"):
        rt.logs("nope")


def test_run_job_from_the_cronjob_like_kubectl_create_job_from(fake, clock):
    rt = runtime(fake, clock)
    rt.up("04")
    name = rt.run_job("event-processor")
    assert name.startswith("event-processor-manual-") and len(name) <= 63
    job = fake.store[("Job", "ecommerce-microservices", name)]
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["name"] == "event-processor"
    assert job["metadata"]["labels"][m.PART_OF] == "labkit"  # cleanup will find it
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][2] == \
        "ecommerce.projections.processor"


def test_run_job_copies_a_suspended_job_and_starts_it(fake, clock):
    rt = runtime(fake, clock)
    rt.up("04")
    name = rt.run_job("event-replay")
    job = fake.store[("Job", "ecommerce-microservices", name)]
    assert job["spec"]["suspend"] is False
    assert job["status"]["conditions"][0]["type"] == "Complete"


def test_run_job_falls_back_to_the_manifests_after_the_ttl(fake, clock):
    rt = runtime(fake, clock)
    name = rt.run_job("saga-orchestrator")  # never applied: taken from manifests/02-saga
    job = fake.store[("Job", "ecommerce-microservices", name)]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][3:] == ["run", "--pending"]
    with pytest.raises(ClusterError, match="No CronJob or Job named 'order-service'"):
        rt.run_job("order-service")


def test_job_copies_drop_server_set_selectors():
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "j", "namespace": "n", "labels": {"a": "b", "job-name": "j"}},
           "spec": {"suspend": True, "selector": {"matchLabels": {"controller-uid": "1"}},
                    "template": {"metadata": {"labels": {"a": "b", "controller-uid": "1",
                                                         "batch.kubernetes.io/job-name": "j"}},
                                 "spec": {"restartPolicy": "Never"}}}}
    copy_ = job_from_job(job, "j-manual-1")
    assert "selector" not in copy_["spec"] and copy_["spec"]["suspend"] is False
    assert copy_["spec"]["template"]["metadata"]["labels"] == {"a": "b"}
    assert copy_["metadata"]["labels"] == {"a": "b", "labkit.io/run": "manual"}
    cron = {"metadata": {"name": "c", "namespace": "n", "uid": "u1"},
            "spec": {"jobTemplate": {"metadata": {"labels": {"x": "y"}},
                                     "spec": {"template": {"spec": {}}}}}}
    made = job_from_cronjob(cron, "c-manual-1")
    assert made["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert made["metadata"]["labels"] == {"x": "y", "labkit.io/run": "manual"}


def test_run_names_are_valid_object_names():
    assert run_name("event-processor", "abcde") == "event-processor-manual-abcde"
    long = run_name("x" * 80, "abcde")
    assert len(long) == 63 and long.endswith("-manual-abcde")


def test_kill_deletes_the_matching_running_pods_at_once(fake, clock):
    rt = runtime(fake, clock)
    labels = {"app.kubernetes.io/name": "payment-service"}
    fake.add_pod("payment-service-a", labels, {"phase": "Running"})
    fake.add_pod("payment-service-old", labels, {"phase": "Succeeded"})
    assert rt.kill("payment-service") == ["payment-service-a"]
    assert ("delete", "Pod", "ecommerce-microservices", "payment-service-a", 0) in fake.calls
    with pytest.raises(ClusterError, match=r"No running pod matches app\.kubernetes\.io/name=payment"):
        rt.kill("payment-service")


def test_image_and_gateway_class_overrides(fake, clock, monkeypatch):
    monkeypatch.setenv("LABKIT_GATEWAY_CLASS", "eg")
    rt = runtime(fake, clock, image=f"123.dkr.ecr.eu-west-1.amazonaws.com/{IMAGE}")
    rt.up(["01", "02"])
    dep = fake.store[("Deployment", "ecommerce-microservices", "order-service")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"123.dkr.ecr.eu-west-1.amazonaws.com/{IMAGE}"
    gw = fake.store[("Gateway", "ecommerce-microservices", "labkit-gateway")]
    assert gw["spec"]["gatewayClassName"] == "eg"
    assert next(o for o in m.load_step("01-networking") if o["kind"] == "Gateway")["spec"][
        "gatewayClassName"] == "cloud-provider-kind"


def test_parse_selector():
    assert parse_selector("order-service") == "app.kubernetes.io/name=order-service"
    assert parse_selector("app=x,tier=y") == "app=x,tier=y"


# --- reaching services ----------------------------------------------------------------------------

def test_gateway_url_and_client_send_the_course_host(fake, clock):
    rt = runtime(fake, clock)
    with pytest.raises(ClusterError, match="The Gateway labkit-gateway has no address"):
        rt.url("gateway")
    rt.up("01")
    assert rt.url("gateway") == "http://172.18.0.9"
    with rt.http("gateway") as client:
        assert client.headers["host"] == "api.local"


def test_a_service_url_is_a_port_forward_to_a_ready_pod(fake, clock):
    rt = runtime(fake, clock)
    rt.up("01")
    labels = {"app.kubernetes.io/name": "order-service", "app.kubernetes.io/component": "service"}
    fake.add_pod("order-service-not-ready", labels, {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False"}]})
    fake.add_pod("order-service-ready", labels, {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]})
    try:
        with rt.http("order-service") as client:
            r = client.get("/api/orders/o-1")
        assert r.json() == {"pod": "order-service-ready", "path": "/api/orders/o-1"}
        # A killed pod is replaced: the next connection goes to the new one.
        del fake.store[("Pod", "ecommerce-microservices", "order-service-ready")]
        fake.add_pod("order-service-new", labels, {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}]})
        r = httpx.get(rt.url("order-service") + "/healthz", timeout=5)
        assert r.json()["pod"] == "order-service-new"
    finally:
        rt.close()
    assert ("port_forward", "order-service-ready", "ecommerce-microservices", 8080) in fake.calls


def test_forward_any_port_of_a_service(fake, clock):
    rt = runtime(fake, clock)
    rt.up("00")
    fake.add_pod("postgres-0", {"app.kubernetes.io/name": "postgres"}, {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    try:
        host, port = rt.forward("postgres", 5432)
        assert host == "127.0.0.1" and rt.forward("postgres", 5432) == (host, port)
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n")
            assert b"postgres-0" in s.recv(4096)
    finally:
        rt.close()
    assert ("port_forward", "postgres-0", "ecommerce-microservices", 5432) in fake.calls


def test_a_service_without_ready_pods_says_so(fake, clock):
    rt = runtime(fake, clock)
    rt.up("01")
    with pytest.raises(ClusterError, match="No ready pod behind Service user-service"):
        rt.url("user-service")
    with pytest.raises(ClusterError, match="No Service 'nope'"):
        rt.url("nope")


# --- down -----------------------------------------------------------------------------------------

def test_down_deletes_exactly_the_labs_objects_and_waits(fake, clock):
    rt = runtime(fake, clock)
    rt.up()
    rt.run_job("event-processor")
    fake.add_pod("someone-elses", {"app": "x"}, {"phase": "Running"}, namespace="default")
    fake.store[("ConfigMap", "testing", "keep-me")] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "keep-me", "namespace": "testing", "labels": {}}}
    fake.delete_lag = 2  # deleted objects stay visible for a while (finalizers, grace)
    deleted = rt.down(keep_namespaces=True)
    assert "Job ecommerce-microservices/saga-orchestrator" in deleted
    assert any(d.startswith("Job ecommerce-microservices/event-processor-manual-") for d in deleted)
    assert clock.now > 0  # it waited for the lagging deletions
    left = {k for k in fake.store if k[0] != "Namespace"}
    assert left == {("Pod", "default", "someone-elses"), ("ConfigMap", "testing", "keep-me")}
    # Reverse plan order: routes before the Services they point at, namespaces last.
    order = [c[1] for c in fake.calls if c[0] == "delete"]
    assert order.index("HTTPRoute") < order.index("Service") < order.index("Secret")


def test_down_removes_the_namespaces_and_is_idempotent(fake, clock):
    rt = runtime(fake, clock)
    rt.up()
    rt.down()
    assert not [k for k in fake.store if k[1] in ("ecommerce-microservices", "testing")]
    assert not [k for k in fake.store if k[0] == "Namespace"]
    fake.calls.clear()
    assert rt.down() == []
    assert not [c for c in fake.calls if c[0] == "delete"]


def test_a_student_skips_the_admins_base_step_and_keeps_it_on_down(fake, clock):
    admin = runtime(fake, clock)
    admin.up("00")
    base = {k for k in fake.store}
    fake.denied = {("create", "namespaces"), ("delete", "namespaces")}
    fake.forbidden_get = {"Namespace"}  # a namespaced Role cannot grant reading namespaces
    fake.forbidden_namespaces = {"testing"}  # the student may only exec into the load-tester
    student = runtime(fake, clock)
    assert {c.check: c for c in student.doctor()}["namespace"].ok is True
    student.up()
    assert len(fake.applied()) == N_OBJECTS  # 00-base once (admin) + 01-04 once (student)
    student.run_job("event-processor")
    deleted = student.down()
    base_objects = {f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                    for o in m.load_step("00-base")}
    assert deleted and not base_objects & set(deleted)
    assert set(fake.store) == base  # exactly the admin's 00-base is left


def test_a_student_without_the_base_step_is_told_who_applies_it(fake, clock):
    fake.denied = {("create", "namespaces")}
    with pytest.raises(ClusterError, match="ask a cluster admin to apply the base step"):
        runtime(fake, clock).up()
    assert fake.applied() == []


def test_down_times_out_with_what_is_left(fake, clock):
    rt = runtime(fake, clock)
    rt.up("00")
    fake.delete_lag = 10_000
    with pytest.raises(ClusterError, match="Timed out after 5s waiting for the lab's objects"):
        rt.down(timeout=5)


# --- errors ---------------------------------------------------------------------------------------

def test_no_kubeconfig_is_one_sentence():
    class ConfigException(Exception):
        pass

    def factory():
        raise ConfigException("Invalid kube-config file. No configuration found.")

    rt = ClusterRuntime(kube_client_factory=factory, progress=False)
    with pytest.raises(ClusterError) as err:
        rt.up()
    assert err.value.message == NO_KUBECONFIG
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert err.value._render_traceback_() == [f"ClusterError: {NO_KUBECONFIG}"]


def test_an_unreachable_api_server_is_one_sentence(fake, clock):
    fake.unreachable = True
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up()
    assert err.value.message.startswith("The Kubernetes API server at kind-labkit "
                                        "(https://127.0.0.1:6443) is unreachable: start the cluster")
    assert "\n" not in err.value.message


def test_a_missing_permission_is_one_sentence(fake, clock):
    fake.forbidden_apply = {"NetworkPolicy"}
    with pytest.raises(ClusterError) as err:
        runtime(fake, clock).up("01")
    msg = err.value.message
    assert msg.startswith("You are not allowed to apply NetworkPolicy ecommerce-microservices/")
    assert "labkit-student Role" in msg and "\n" not in msg


# --- doctor ---------------------------------------------------------------------------------------

def test_doctor_all_good(fake, clock):
    rt = runtime(fake, clock)
    checks = {c.check: c for c in rt.doctor()}
    assert checks["namespace"].ok is True and "`labkit up` creates it" in checks["namespace"].message
    rt.up("00")
    fake.store[("GatewayClass", "", "cloud-provider-kind")] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "cloud-provider-kind"}}
    checks = rt.doctor()
    assert [c.check for c in checks] == ["kubeconfig", "api server", "namespace", "permissions",
                                         "gateway api", "image", "gateway network"]
    assert all(c.ok for c in checks), checks


def test_doctor_reports_each_problem(fake, clock):
    fake.denied = {("patch", "deployments"), ("get", "pods/log"), ("create", "namespaces")}
    fake.missing_kinds = {"HTTPRoute"}
    fake.nodes = [node("labkit-worker", "10.0.0.5", ["postgres:17.2-alpine"])]
    checks = {c.check: c for c in runtime(fake, clock).doctor()}
    assert checks["namespace"].ok is False and "00-base" in checks["namespace"].message
    assert checks["permissions"].ok is False
    assert "You may not patch deployments, get pods/log" in checks["permissions"].message
    assert checks["gateway api"].ok is False
    assert checks["gateway api"].message == MISSING_GATEWAY_CRDS
    assert checks["image"].ok is False and "labkit-worker" in checks["image"].message
    assert checks["gateway network"].ok is False
    assert "10.0.0.5" in checks["gateway network"].message


def test_doctor_stops_at_an_unreachable_server(fake, clock):
    fake.unreachable = True
    checks = runtime(fake, clock).doctor()
    assert [(c.check, c.ok) for c in checks] == [("kubeconfig", True), ("api server", False)]


def test_doctor_without_kubeconfig():
    class ConfigException(Exception):
        pass

    def factory():
        raise ConfigException("Invalid kube-config file. No configuration found.")

    assert ClusterRuntime(kube_client_factory=factory).doctor() == [
        ("kubeconfig", False, NO_KUBECONFIG)]


def test_image_check_cannot_tell_without_node_images():
    assert check_image_on_nodes([{"metadata": {"name": "n"}, "status": {}}]).ok is None
    assert check_image_on_nodes([node("n", "172.18.0.2", [IMAGE])]).ok is True


def test_gateway_cidr_check_only_applies_to_cloud_provider_kind():
    objs = m.load_step("01-networking")
    assert check_gateway_cidr([node("n", "172.18.0.2", [])], objs).ok is True
    for o in objs:
        if o["kind"] == "Gateway":
            o["spec"]["gatewayClassName"] = "eg"
    assert check_gateway_cidr([node("n", "10.1.1.1", [])], objs).ok is True


# --- step by step (lab.up(step=...)) --------------------------------------------------------------

@pytest.mark.parametrize("step", m.STEPS)
def test_lab_up_step_applies_just_that_step_and_the_ones_before(fake, clock, step):
    from dataclasses import replace

    from ecommerce.config import Settings
    from labkit.lab import Lab

    lab = Lab(replace(Settings.from_env(), mode="cluster"))
    lab.runtime = runtime(fake, clock)
    df = lab.up(step=step, progress=False)
    wanted = m.STEPS[: m.STEPS.index(step) + 1]
    expected = {(o["kind"], o["metadata"]["name"]) for s in wanted for o in m.load_step(s)}
    assert {(c[1], c[3]) for c in fake.applied()} == expected
    assert set(df["step"]) <= set(wanted) and set(df["step"]) == {
        s for s in wanted if any(o["kind"] in (*m.WORKLOAD_KINDS, "Gateway")
                                 for o in m.load_step(s))}
