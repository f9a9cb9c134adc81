"""The wire contract between `ClusterRuntime` and a Kubernetes API server.

Every test drives the runtime through the real `kubernetes` client (kubeconfig -> urllib3 ->
HTTP) against the recording fake in fake_apiserver.py, then asserts what crossed the wire:
method, path, query parameters and content type. Unit tests with an in-process fake cannot
catch a misspelled keyword argument (the dynamic client drops unknown names silently); these
can, and `test_the_contract_catches_*` prove it.
"""

from __future__ import annotations

from typing import Any

import pytest

from labkit.runtime import manifests as m
from labkit.runtime.cluster import FIELD_MANAGER, ClusterRuntime
from labkit.runtime.k8s_errors import MISSING_GATEWAY_CRDS, ClusterError
from tests.contract.fake_apiserver import APPLY_PATCH, FakeApiServer, Request, kubeconfig

NS = "ecommerce-microservices"
ALL_OBJECTS = [o for s in m.STEPS for o in m.retarget(m.load_step(s), NS)]


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of a manifest object (what `kubectl apply --server-side` PATCHes)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = {"NetworkPolicy": "networkpolicies", "Ingress": "ingresses"}.get(
        obj["kind"], obj["kind"].lower() + "s")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    meta = obj["metadata"]
    if obj["kind"] in m.CLUSTER_SCOPED_KINDS:
        return f"{base}/{plural}/{meta['name']}"
    return f"{base}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


# --- the contract's checks (each used by the tests and by the proof that they can fail) -----------

def check_applies(requests: list[Request]) -> None:
    """Every write is a server-side apply owned by labkit, forcing conflicts, never a dry run."""
    writes = [r for r in requests if r.method in ("PATCH", "POST", "PUT")
              and not r.path.endswith("selfsubjectaccessreviews")]
    assert writes, "no writes recorded"
    for r in writes:
        assert r.method == "PATCH", r
        assert r.content_type == APPLY_PATCH, r
        assert r.q("fieldManager") == FIELD_MANAGER, r
        assert r.q("force") == "true", r
        assert r.q("dryRun") is None, r
        annotations = (r.body.get("metadata") or {}).get("annotations") or {}
        assert annotations.get(m.CREATED_BY) == m.CREATED_BY_VALUE, r


def check_scoped_lists(requests: list[Request], selector: str) -> None:
    """Every list that feeds a delete is scoped by a label selector."""
    lists = [r for r in requests if r.method == "GET" and r.q("labelSelector") is not None]
    unscoped = [r for r in requests if r.method == "GET" and r.path.endswith("/pods")
                and r.q("labelSelector") is None]
    assert lists, "no label-scoped lists recorded"
    assert not unscoped, f"pods listed without a label selector: {unscoped[0]}"
    for r in lists:
        assert selector in (r.q("labelSelector") or ""), r


def check_deletes(requests: list[Request], propagation: str | None = "Background",
                  grace: str | None = None) -> None:
    deletes = [r for r in requests if r.method == "DELETE"]
    assert deletes, "no deletes recorded"
    for r in deletes:
        assert r.q("propagationPolicy") == propagation, r
        assert r.q("gracePeriodSeconds") == grace, r
        assert r.q("dryRun") is None, r


# --- up, down ------------------------------------------------------------------------------------

def test_up_applies_every_object_once_with_server_side_apply(runtime: ClusterRuntime,
                                                              server: FakeApiServer) -> None:
    runtime.up()
    patches = server.calls("PATCH")
    assert sorted(r.path for r in patches) == sorted(object_path(o) for o in ALL_OBJECTS)
    check_applies(server.requests)
    assert server.calls("GET", r"^/version/?$"), "preflight reaches the API server first"


@pytest.mark.parametrize("step", m.STEPS)
def test_up_each_step_on_its_own(runtime: ClusterRuntime, server: FakeApiServer,
                                 step: str) -> None:
    for earlier in m.STEPS[: m.STEPS.index(step)]:  # applied before (not through the wire)
        for obj in m.load_step(earlier):
            server.put(obj)
    runtime.up(step)
    paths = [r.path for r in server.calls("PATCH")]
    expected = [object_path(o) for o in m.plan(m.retarget(m.load_step(step), NS))]
    assert paths == expected  # in plan order: namespaces first, CRD kinds last
    check_applies(server.requests)


def test_up_without_gateway_crds_writes_nothing(runtime: ClusterRuntime,
                                                server: FakeApiServer) -> None:
    server.without_groups.add("gateway.networking.k8s.io")
    with pytest.raises(ClusterError) as err:
        runtime.up()
    assert err.value.message == MISSING_GATEWAY_CRDS
    assert server.calls("PATCH") == []


def test_down_deletes_only_by_label_with_background_propagation(runtime: ClusterRuntime,
                                                                server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    start = len(server.requests)
    deleted = runtime.down()
    requests = server.requests[start:]
    check_scoped_lists(requests, m.LAB_SELECTOR)
    check_deletes([r for r in requests if "/namespaces/" in r.path and r.path.count("/") > 5])
    assert {d.split()[0] for d in deleted} >= {"Deployment", "Service", "NetworkPolicy",
                                               "Namespace", "Job", "CronJob", "HTTPRoute"}
    assert not server.objects, f"left behind: {list(server.objects)[:5]}"
    assert runtime.leftovers() == []


def test_down_is_idempotent(runtime: ClusterRuntime, server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    runtime.down()
    start = len(server.requests)
    assert runtime.down() == []
    assert [r for r in server.requests[start:] if r.method == "DELETE"] == []


# --- never touch what labkit did not create -------------------------------------------------------

def foreign_testing_namespace(server: FakeApiServer) -> None:
    server.put({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "testing", "labels": {"team": "qa"}}})
    server.put({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "qa-runner", "namespace": "testing",
                             "labels": {"app.kubernetes.io/name": "qa-runner"}},
                "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "qa"}}}}})


def test_up_uses_an_existing_namespace_without_taking_it_over(runtime: ClusterRuntime,
                                                              server: FakeApiServer) -> None:
    foreign_testing_namespace(server)
    runtime.up()
    assert not server.calls("PATCH", r"^/api/v1/namespaces/testing$")
    ns = server.find("Namespace", "testing")
    assert ns is not None and ns["metadata"]["labels"] == {"team": "qa"}  # no Pod Security label
    assert server.find("Deployment", "load-tester", "testing") is not None
    assert any("testing already exists and was not created by labkit" in line
               for line in runtime.echoed)  # type: ignore[attr-defined]


def test_down_keeps_a_namespace_and_objects_labkit_did_not_create(runtime: ClusterRuntime,
                                                                   server: FakeApiServer) -> None:
    foreign_testing_namespace(server)
    # someone else's object that happens to carry the lab's label, without the annotation
    server.put({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "qa-service", "namespace": NS,
                             "labels": {m.PART_OF: m.PART_OF_VALUE}}, "spec": {}})
    runtime.up()
    server.put({"apiVersion": "v1", "kind": "Service",  # (put again: `up` created NS after it)
                "metadata": {"name": "qa-service", "namespace": "testing",
                             "labels": {m.PART_OF: m.PART_OF_VALUE}}, "spec": {}})
    runtime.down()
    assert not server.calls("DELETE", r"^/api/v1/namespaces/testing$")
    assert server.find("Namespace", "testing") is not None
    assert server.find("Deployment", "qa-runner", "testing") is not None
    assert server.find("Service", "qa-service", "testing") is not None
    assert server.find("Deployment", "load-tester", "testing") is None  # ours: gone
    assert not server.calls("DELETE", r"/services/qa-service$")
    assert any("kept" in line and "qa-service" in line
               for line in runtime.echoed)  # type: ignore[attr-defined]


def test_up_refuses_to_take_over_an_object_labkit_did_not_create(runtime: ClusterRuntime,
                                                                  server: FakeApiServer) -> None:
    server.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NS, "annotations": {m.CREATED_BY: m.CREATED_BY_VALUE}}})
    server.put({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "order-service", "namespace": NS}, "spec": {}})
    with pytest.raises(ClusterError) as err:
        runtime.up()
    assert err.value.message.startswith(
        "1 object(s) the lab would apply already exist and were not created by labkit (Service "
        f"{NS}/order-service): `labkit up` would take them over, so it stops")
    assert server.calls("PATCH") == []


def test_up_adopts_objects_of_an_older_labkit(runtime: ClusterRuntime,
                                              server: FakeApiServer) -> None:
    """Objects with the lab's part-of label but no annotation (applied by an older labkit)."""
    server.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NS, "annotations": {m.CREATED_BY: m.CREATED_BY_VALUE}}})
    server.put({"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "order-service", "namespace": NS, "labels": {m.PART_OF: m.PART_OF_VALUE}},
        "spec": {}})
    runtime.up()
    svc = server.find("Service", "order-service", NS)
    assert svc is not None and m.created_by_labkit(svc)


# --- doctor ---------------------------------------------------------------------------------------

def access_reviews(server: FakeApiServer) -> set[tuple[str, str, str]]:
    out = set()
    for r in server.calls("POST", "selfsubjectaccessreviews$"):
        a = r.body["spec"]["resourceAttributes"]
        res = a["resource"] + (f"/{a['subresource']}" if a.get("subresource") else "")
        out.add((a["verb"], res, a.get("namespace") or ""))
    return out


def test_doctor_asks_for_both_websocket_verbs(runtime: ClusterRuntime,
                                              server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    checks = {c.check: c for c in runtime.doctor()}
    assert checks["permissions"].ok is True
    asked = access_reviews(server)
    for verb in ("get", "create"):
        assert (verb, "pods/portforward", NS) in asked
        assert (verb, "pods/exec", "testing") in asked
    review = server.calls("POST", "selfsubjectaccessreviews$")[0]
    # kubernetes 37 sends no Content-Type here; the API server then decodes JSON, its default
    assert review.content_type in ("", "application/json")
    assert review.body["kind"] == "SelfSubjectAccessReview"
    assert review.body["apiVersion"] == "authorization.k8s.io/v1"


@pytest.mark.parametrize("denied", [("get", "pods/portforward"), ("create", "pods/portforward"),
                                    ("get", "pods/exec")])
def test_doctor_names_a_missing_websocket_verb(runtime: ClusterRuntime, server: FakeApiServer,
                                               denied: tuple[str, str],
        installed: FakeApiServer) -> None:
    assert installed
    server.denied.add(denied)
    check = next(c for c in runtime.doctor() if c.check == "permissions")
    assert check.ok is False
    assert f"{denied[0]} {denied[1]}" in check.message


def test_doctor_reports_a_missing_current_context(server: FakeApiServer, tmp_path: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.config import kube_config

    path = kubeconfig(server.url, str(tmp_path / "broken"), current="gone")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
    checks = ClusterRuntime(NS, progress=False, echo=lambda _: None).doctor()
    assert checks[0].check == "kubeconfig" and checks[0].ok is False
    assert "current context 'gone' is not in its contexts list" in checks[0].message
    assert "kubectl config use-context" in checks[0].message
    assert "No kubeconfig found" not in checks[0].message
    assert server.requests == []


# --- jobs, crashes, logs --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["saga-orchestrator", "event-processor", "event-replay"])
def test_run_job_applies_a_fresh_annotated_job(runtime: ClusterRuntime, server: FakeApiServer,
                                               name: str,
        installed: FakeApiServer) -> None:
    assert installed
    start = len(server.requests)
    job = runtime.run_job(name)
    patches = [r for r in server.requests[start:] if r.method == "PATCH"]
    assert [r.path for r in patches] == [f"/apis/batch/v1/namespaces/{NS}/jobs/{job}"]
    check_applies(patches)
    body = patches[0].body
    assert body["spec"].get("suspend") in (None, False)
    assert "selector" not in body["spec"]
    assert server.find("Job", job, NS)["status"]["succeeded"] == 1


def test_kill_lists_by_label_and_deletes_at_once(runtime: ClusterRuntime,
                                                 server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    start = len(server.requests)
    killed = runtime.kill("payment-service")
    requests = server.requests[start:]
    check_scoped_lists(requests, f"{m.NAME_LABEL}=payment-service")
    check_deletes(requests, propagation="Background", grace="0")
    assert len(killed) == 1 and killed[0].startswith("payment-service-")
    assert server.find("Pod", killed[0], NS) is None
    assert server.find("Deployment", "order-service", NS) is not None
    assert len([k for k in server.objects if k[0] == "Pod"]) > 5  # the others are untouched


def test_logs_reads_each_container_with_tail(runtime: ClusterRuntime,
                                             server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    text = runtime.logs("order-service", tail=50)
    call = server.calls("GET", r"/pods/[^/]+/log$")[-1]
    assert call.path.startswith(f"/api/v1/namespaces/{NS}/pods/order-service-")
    assert call.q("container") == "order-service"
    assert call.q("tailLines") == "50"
    assert call.q("previous") == "false"
    assert text.startswith("log of order-service-")


# --- the port-forward websocket --------------------------------------------------------------------

def http_echo(data: bytes) -> bytes:
    line = data.split(b"\r\n", 1)[0]
    body = b"forwarded " + line
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def test_port_forward_handshake_and_relay(runtime: ClusterRuntime,
                                          server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    server.echo_ports[8080] = http_echo
    with runtime.http("order-service") as client:
        reply = client.get("/api/orders")
    assert reply.status_code == 200
    assert reply.text == "forwarded GET /api/orders HTTP/1.1"
    upgrades = server.calls("GET", r"/portforward$")
    assert upgrades, "no port-forward handshake recorded"
    for r in upgrades:
        assert r.path.startswith(f"/api/v1/namespaces/{NS}/pods/order-service-")
        assert r.q("ports") == "8080"
        assert r.headers.get("upgrade", "").lower() == "websocket"
        assert "v4.channel.k8s.io" in r.headers.get("sec-websocket-protocol", "")
        assert r.headers.get("authorization") == "Bearer t0ken"


def test_a_refused_port_forward_is_the_rbac_sentence(runtime: ClusterRuntime,
                                                     server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    server.portforward_status = 403
    with pytest.raises(ClusterError) as err:
        runtime.http("order-service")
    message = err.value.message
    assert message.startswith("You are not allowed to port-forward to pod order-service-")
    assert "cannot get resource \"pods/portforward\"" in message
    assert "get` and `create` on pods/portforward" in message
    assert "\n" not in message


def test_a_port_forward_refused_later_surfaces_instead_of_a_reset(runtime: ClusterRuntime,
                                                                  server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    server.echo_ports[8080] = http_echo
    client = runtime.http("order-service")
    server.portforward_status = 403  # e.g. the RoleBinding was removed meanwhile
    with pytest.raises(ClusterError) as err:
        client.get("/api/orders")
    assert "get` and `create` on pods/portforward" in err.value.message
    client.close()


# --- error answers, replayed ------------------------------------------------------------------------

DEPLOY = rf"/apis/apps/v1/namespaces/{NS}/deployments/order-service$"


@pytest.mark.parametrize(("status", "message", "expected"), [
    (403, 'deployments.apps "order-service" is forbidden: User "student" cannot patch resource',
     "You are not allowed to apply Deployment ecommerce-microservices/order-service in namespace "
     "ecommerce-microservices (deployments.apps \"order-service\" is forbidden: User \"student\" "
     "cannot patch resource): ask your instructor to bind the labkit-student Role"),
    (404, 'namespaces "ecommerce-microservices" not found',
     "Namespace ecommerce-microservices does not exist: apply the base step first"),
    (409, "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
     "Conflict while trying to apply Deployment ecommerce-microservices/order-service"),
    (422, 'Deployment.apps "order-service" is invalid: spec.replicas: Invalid value: -1',
     "The API server rejected the object while trying to apply Deployment "
     "ecommerce-microservices/order-service in namespace ecommerce-microservices: "
     'Deployment.apps "order-service" is invalid: spec.replicas: Invalid value: -1.'),
    (500, "etcdserver: request timed out",
     "The API server failed (500) while trying to apply Deployment "
     "ecommerce-microservices/order-service in namespace ecommerce-microservices: etcdserver: "
     "request timed out; wait a moment and retry."),
])
def test_error_answers_become_one_sentence(runtime: ClusterRuntime, server: FakeApiServer,
                                           status: int, message: str, expected: str) -> None:
    server.fail("PATCH", DEPLOY, status, message)
    with pytest.raises(ClusterError) as err:
        runtime.up()
    assert err.value.message.startswith(expected), err.value.message
    assert "\n" not in err.value.message
    assert "Traceback" not in err.value.message


def test_a_forbidden_list_during_down_is_one_sentence(runtime: ClusterRuntime,
                                                      server: FakeApiServer,
        installed: FakeApiServer) -> None:
    assert installed
    server.fail("GET", rf"/api/v1/namespaces/{NS}/services$", 403,
                'services is forbidden: User "student" cannot list resource "services"')
    with pytest.raises(ClusterError) as err:
        runtime.down()
    assert err.value.message.startswith("You are not allowed to list Service in namespace "
                                        f"{NS} (services is forbidden")


# --- proof that the contract catches misspelled keyword arguments ----------------------------------

def misspell(monkeypatch: pytest.MonkeyPatch, method: str, right: str, wrong: str) -> None:
    """Make every DynamicClient.<method> call pass `wrong=` where labkit passes `right=`: what a
    typo in kube_api.py does (the dynamic client drops unknown keyword names silently)."""
    from kubernetes.dynamic.client import DynamicClient

    real = getattr(DynamicClient, method)

    def typo(self: Any, resource: Any, *args: Any, **kwargs: Any) -> Any:
        if right in kwargs:
            kwargs[wrong] = kwargs.pop(right)
        return real(self, resource, *args, **kwargs)

    monkeypatch.setattr(DynamicClient, method, typo)


def test_the_contract_catches_a_misspelled_label_selector(runtime: ClusterRuntime,
                                                          server: FakeApiServer,
                                                          monkeypatch: pytest.MonkeyPatch,
        installed: FakeApiServer) -> None:
    assert installed
    misspell(monkeypatch, "get", "label_selector", "labelSelector")
    start = len(server.requests)
    runtime.kill("payment-service")
    with pytest.raises(AssertionError, match="label"):
        check_scoped_lists(server.requests[start:], f"{m.NAME_LABEL}=payment-service")
    # and what it would have done on a real cluster: every running pod of the namespace is gone
    assert server.find("Deployment", "order-service", NS) is not None
    assert not [k for k, o in server.objects.items() if k[0] == "Pod" and k[1] == NS
                and o["status"]["phase"] == "Running"]


def test_the_contract_catches_a_misspelled_propagation_policy(
        runtime: ClusterRuntime, server: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
        installed: FakeApiServer) -> None:
    assert installed
    misspell(monkeypatch, "delete", "propagation_policy", "propagationPolicy")
    start = len(server.requests)
    runtime.down()
    with pytest.raises(AssertionError, match=r"propagationPolicy|None"):
        check_deletes(server.requests[start:])


def test_the_contract_catches_a_misspelled_field_manager(runtime: ClusterRuntime,
                                                         server: FakeApiServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    misspell(monkeypatch, "server_side_apply", "field_manager", "fieldManager")
    with pytest.raises(ClusterError, match="fieldManager: Required value"):
        runtime.up("00-base")
    requests = server.calls("PATCH")
    with pytest.raises(AssertionError):
        check_applies(requests)


# --- plugins in cluster mode (lab.deploy_code / remove_code) ----------------------------------------

def orders_per_user():  # a projection plugin, as in 03-cqrs
    from ecommerce.domain.readmodel import Incr
    from ecommerce.plugins import projection
    from ecommerce.projections.base import Projection

    def placed(e):
        return [Incr("orders_per_user", e.data["user_id"], {"orders": 1})]

    projection(Projection("orders-per-user", ("orders_per_user",), {"OrderPlaced": placed}))


def test_deploy_code_writes_the_configmap_and_rolls_the_deployments_that_use_it(
        runtime: ClusterRuntime, server: FakeApiServer, installed: FakeApiServer) -> None:
    from types import SimpleNamespace

    from ecommerce import plugins
    from labkit.lab.plugins import Plugins
    from labkit.runtime.cluster import PLUGINS_CONFIGMAP, RESTART_FIELD_MANAGER, RESTARTED_AT

    assert installed
    lab = SimpleNamespace(mode="cluster", runtime=runtime)
    cm_path = f"/api/v1/namespaces/{NS}/configmaps/{PLUGINS_CONFIGMAP}"
    users = ["event-processor-follow", "query-service", "event-store-api"]
    try:
        start = len(server.requests)
        out = Plugins(lab).deploy(orders_per_user)
        assert out["file"] == f"configmap/{PLUGINS_CONFIGMAP}/orders_per_user.py"
        assert sorted(out["restarted"]) == sorted(users)
        writes = [r for r in server.requests[start:] if r.method == "PATCH"]
        # The file: one server-side apply of the ConfigMap, owned by labkit like everything else.
        check_applies([r for r in writes if r.path == cm_path])
        assert writes[0].path == cm_path
        cm = server.find("ConfigMap", PLUGINS_CONFIGMAP, NS)
        assert "projection(Projection(\"orders-per-user\"" in cm["data"]["orders_per_user.py"]
        assert cm["metadata"]["labels"][m.PART_OF] == m.PART_OF_VALUE
        # The restarts: a pod-template annotation under a field manager of its own, so the
        # manifests' fields (owned by `labkit`) stay; the Deployments keep their containers.
        restarts = writes[1:]
        assert sorted(r.path.rsplit("/", 1)[1] for r in restarts) == sorted(users)
        for r in restarts:
            assert r.content_type == APPLY_PATCH and r.q("force") == "true", r
            assert r.q("fieldManager") == RESTART_FIELD_MANAGER, r
            assert set(r.body["spec"]) == {"template"}, r.body
        for name in users:
            live = server.find("Deployment", name, NS)
            assert RESTARTED_AT in live["spec"]["template"]["metadata"]["annotations"]
            assert live["spec"]["template"]["spec"]["containers"], name
            assert live["metadata"]["generation"] == 2
        assert server.find("Deployment", "order-service", NS)["metadata"]["generation"] == 1

        # A fresh notebook kernel lists what is deployed, from the ConfigMap.
        plugins.unload("orders_per_user")
        assert list(Plugins(lab).table()["plugin"]) == ["orders_per_user"]

        # Removing it takes the key away and rolls the same Deployments again.
        gone = Plugins(lab).remove("orders_per_user")
        assert gone["removed"] is True and sorted(gone["restarted"]) == sorted(users)
        assert server.find("ConfigMap", PLUGINS_CONFIGMAP, NS)["data"] == {}
        assert Plugins(lab).remove("orders_per_user")["removed"] is False
    finally:
        plugins.unload("orders_per_user")

    # `down` sweeps the ConfigMap with the rest of the lab.
    runtime.down()
    assert server.find("ConfigMap", PLUGINS_CONFIGMAP, NS) is None


def test_a_restart_that_does_not_roll_out_says_what_to_do(
        runtime: ClusterRuntime, server: FakeApiServer, installed: FakeApiServer) -> None:
    from types import SimpleNamespace

    from ecommerce import plugins
    from labkit.lab.plugins import PluginError, Plugins

    assert installed
    runtime.wait = _never_ready  # type: ignore[method-assign]
    try:
        with pytest.raises(PluginError, match=r"lab\.remove_code\('orders_per_user'\)"):
            Plugins(SimpleNamespace(mode="cluster", runtime=runtime)).deploy(orders_per_user)
    finally:
        plugins.unload("orders_per_user")


def _never_ready(*args: Any, **kwargs: Any) -> None:
    raise ClusterError("Timed out after 300s waiting for Deployment ecommerce-microservices/"
                       "query-service: 0/3 pods ready (readiness: plugins failed)")
