"""labkit.ops.validate: the real manifests pass, and each kind of breakage is reported.

Each mutation test breaks one thing in a copy of the manifests and asserts the validator names
it, so a check that silently stopped working would fail here.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecommerce.config import REPO_DIR
from labkit.cli import main as cli_main
from labkit.ops import validate as v
from labkit.runtime import manifests as m

REPO = REPO_DIR


@pytest.fixture(scope="module")
def loaded() -> list[v.Item]:
    items, problems = v.load_items()
    assert problems == []
    return items


def find(items: list[v.Item], kind: str, name: str) -> dict[str, Any]:
    return next(it.obj for it in items if it.kind == kind and it.name == name)


def container(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return m.pod_template(obj)["spec"]["containers"][index]


def problems_after(loaded: list[v.Item], mutate: Callable[[list[v.Item]], None],
                   *, schemas: bool = False) -> list[str]:
    items = [v.Item(it.step, it.path, copy.deepcopy(it.obj)) for it in loaded]
    mutate(items)
    return [str(p) for p in v.check_items(items, schemas=schemas)
            if "finds no such module" not in p.message]


def assert_reported(problems: list[str], *fragments: str) -> None:
    for fragment in fragments:
        assert any(fragment in p for p in problems), f"{fragment!r} not in:\n" + "\n".join(problems)


# --- the real tree -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_problems() -> list[v.Problem]:
    return v.validate_all()


def test_real_manifests_pass_every_check_but_unwritten_entrypoints(real_problems):
    other = [str(p) for p in real_problems if "finds no such module" not in p.message]
    assert other == []


def test_every_manifest_entrypoint_module_exists(real_problems):
    """`python -m labkit.ops.validate` fails until every entrypoint in the manifests is written."""
    missing = sorted({p.message.split()[0] for p in real_problems
                      if "finds no such module" in p.message})
    if missing and os.environ.get("LABKIT_REQUIRE_SERVERS") != "1":
        pytest.skip(f"entrypoints not written yet: {', '.join(missing)}")
    assert missing == []


def test_kubernetes_validate_ships_the_pinned_schemas_offline():
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    strict = schemas / f"v{v.DEFAULT_K8S_VERSION}-local-strict"
    assert (strict / "deployment-apps-v1.json").is_file() and (strict / "_definitions.json").is_file()
    assert v.DEFAULT_K8S_VERSION == "1.33.0"


def test_main_prints_ok_or_problems_and_sets_the_exit_code(tmp_path: Path, capsys):
    root = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", root)
    shutil.copy(REPO / "Dockerfile", tmp_path / "Dockerfile")
    path = root / "03-cqrs" / "query-service.yaml"
    path.write_text(path.read_text().replace("replicas: 3", "replicas: 1"))
    assert cli_main(["validate", "--manifests", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "must run 3 replicas" in out and "problem(s) in 59 objects" in out


# --- strict schemas ------------------------------------------------------------------------

def test_strict_schema_rejects_an_unknown_field(loaded):
    def mutate(items):
        find(items, "Deployment", "query-service")["spec"]["replica"] = 3
    assert_reported(problems_after(loaded, mutate, schemas=True),
                    "Deployment ecommerce-microservices/query-service: invalid against Kubernetes "
                    "1.33 (strict)", "replica")


def test_an_unsupported_kubernetes_version_is_a_problem(loaded):
    problems = [str(p) for p in v.check_schemas(loaded[:1], "1.99.0")]
    assert problems and "could not be validated: kubernetes-validate does not support version " \
        "1.99" in problems[0]


def test_strict_schema_rejects_a_wrong_type(loaded):
    def mutate(items):
        container(find(items, "Deployment", "order-service"))["ports"][0]["containerPort"] = "8080"
    assert_reported(problems_after(loaded, mutate, schemas=True), "containerPort")


def test_a_kind_without_schema_or_check_is_reported(loaded):
    def mutate(items):
        route = find(items, "HTTPRoute", "ecommerce-routes")
        items.append(v.Item("01-networking", Path("x.yaml"),
                            {**copy.deepcopy(route), "kind": "TCPRoute"}))
    assert_reported(problems_after(loaded, mutate, schemas=True),
                    "no schema for gateway.networking.k8s.io/v1 TCPRoute")


def test_httproute_structure_is_checked(loaded):
    def mutate(items):
        spec = find(items, "HTTPRoute", "ecommerce-routes")["spec"]
        spec["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # the Ingress spelling
        spec["rules"][1]["matches"][0]["path"]["value"] = "api/orders"
        spec["rules"][2]["backendRefs"][0].pop("port")
        spec["rules"][3]["backendRef"] = []
        spec["parentRefs"][0]["kind"] = "Service"
        spec["hostnames"] = ["Shop_Local"]
    problems = problems_after(loaded, mutate, schemas=True)
    crd = "invalid against the Gateway API v1.6.1 CRD: "
    assert_reported(problems, crd + "spec.hostnames[0]: 'Shop_Local' does not match",
                    "hostnames must include the course's api.local",
                    crd + "spec.rules[0].matches[0].path.type: 'Prefix' is not one of ['Exact', "
                    "'PathPrefix', 'RegularExpression']",
                    "spec.rules[1].matches[0].path: value must be an absolute path and start with '/'",
                    "spec.rules[2].backendRefs[0]: Must have port for Service reference (a CEL rule",
                    crd + "spec.rules[3]: Additional properties are not allowed ('backendRef' was "
                    "unexpected)", "spec.parentRefs[0] must refer to a Gateway")


def test_gateway_structure_is_checked(loaded):
    def mutate(items):
        spec = find(items, "Gateway", "labkit-gateway")["spec"]
        spec.pop("gatewayClassName")
        spec["listeners"][0]["protocol"] = "HTTP 2"
        spec["listeners"][0]["port"] = 0
        spec["listeners"].append({**spec["listeners"][0], "port": 8080, "protocol": "HTTP"})
    crd = "invalid against the Gateway API v1.6.1 CRD: "
    assert_reported(problems_after(loaded, mutate, schemas=True),
                    crd + "spec: 'gatewayClassName' is a required property",
                    crd + "spec.listeners[0].protocol: 'HTTP 2' does not match",
                    crd + "spec.listeners[0].port: 0 is less than the minimum of 1",
                    "spec.listeners: Listener name must be unique within the Gateway (a CEL rule")


def test_the_vendored_gateway_api_crds_are_the_ones_the_readme_names():
    from labkit.ops import crd_schema

    readme = (crd_schema.SCHEMA_DIR / "README.md").read_text()
    assert f"**{crd_schema.GATEWAY_API_VERSION}**" in readme
    for path in crd_schema.SCHEMA_DIR.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == \
            crd_schema.GATEWAY_API_VERSION, path.name
        assert path.name in readme
    assert crd_schema.knows("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert not crd_schema.knows("gateway.networking.k8s.io/v1", "TCPRoute")


# --- images, probes, security ----------------------------------------------------------------

def test_latest_or_missing_tags_are_reported(loaded):
    def mutate(items):
        container(find(items, "Deployment", "redis"))["image"] = "redis:latest"
        container(find(items, "StatefulSet", "postgres"))["image"] = "postgres"
    problems = problems_after(loaded, mutate)
    assert_reported(problems, "container redis: image 'redis:latest' must be pinned",
                    "container postgres: image 'postgres' must be pinned")


def test_lab_containers_must_use_the_dockerfile_image(loaded):
    def mutate(items):
        c = container(find(items, "Deployment", "command-service"))
        c["image"] = "labkit:0.0.9"
        c["imagePullPolicy"] = "Always"
    assert_reported(problems_after(loaded, mutate), f"is not the lab image {m.IMAGE}",
                    "imagePullPolicy must be IfNotPresent")


def test_a_dropped_probe_is_reported(loaded):
    def mutate(items):
        c = container(find(items, "Deployment", "order-service"))
        del c["readinessProbe"]
        c["livenessProbe"]["httpGet"]["path"] = "/"
    assert_reported(problems_after(loaded, mutate),
                    "order-service container order-service: readinessProbe must be an httpGet of "
                    "/readyz", "livenessProbe must be an httpGet of /healthz (got '/')")


def test_a_probe_on_an_undeclared_port_is_reported(loaded):
    def mutate(items):
        container(find(items, "Deployment", "query-service"))["readinessProbe"]["httpGet"][
            "port"] = "metrics"
    assert_reported(problems_after(loaded, mutate),
                    "readinessProbe targets port 'metrics', which the container does not declare")


def test_an_http_probe_on_a_one_shot_worker_is_reported(loaded):
    def mutate(items):
        c = container(find(items, "CronJob", "event-processor"))
        c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
    assert_reported(problems_after(loaded, mutate), "event-processor serves no HTTP")


@pytest.mark.parametrize("name", ["event-processor-follow", "saga-orchestrator-follow"])
def test_a_follower_without_its_heartbeat_probes_is_reported(loaded, name):
    def mutate(items):
        c = container(find(items, "Deployment", name))
        del c["livenessProbe"]
        c["readinessProbe"] = {"exec": {"command": ["true"]}}
        c["env"] = [e for e in c["env"] if e["name"] != "LABKIT_PORT"]
    assert_reported(problems_after(loaded, mutate), "livenessProbe must be an httpGet of /healthz",
                    "readinessProbe must be an httpGet of /readyz", "reads LABKIT_PORT but the "
                    "manifest does not set it")


def test_insecure_containers_are_reported(loaded):
    def mutate(items):
        obj = find(items, "Deployment", "payment-service")
        c = container(obj)
        c["securityContext"] = {"readOnlyRootFilesystem": False, "privileged": True,
                                "capabilities": {"add": ["NET_ADMIN"]}}
        m.pod_template(obj)["spec"]["securityContext"].pop("runAsNonRoot")
        del c["resources"]["limits"]
    assert_reported(problems_after(loaded, mutate), "runAsNonRoot must be true",
                    "allowPrivilegeEscalation must be false", "readOnlyRootFilesystem must be true",
                    "capabilities must drop ALL", "privileged containers are not allowed",
                    "adds capabilities", "resources.limits must set cpu and memory")


def test_a_read_only_lab_container_needs_tmp(loaded):
    def mutate(items):
        container(find(items, "Deployment", "user-service"))["volumeMounts"] = []
    assert_reported(problems_after(loaded, mutate), "mount an emptyDir at /tmp")


# --- selectors, ports, entrypoints, env --------------------------------------------------------

def test_a_broken_service_selector_is_reported(loaded):
    def mutate(items):
        find(items, "Service", "query-service")["spec"]["selector"][
            "app.kubernetes.io/name"] = "query-svc"
    assert_reported(problems_after(loaded, mutate),
                    "Service ecommerce-microservices/query-service: selector "
                    "app.kubernetes.io/component=service,app.kubernetes.io/name=query-svc matches "
                    "no pod template")


def test_a_service_target_port_must_exist(loaded):
    def mutate(items):
        find(items, "Service", "order-service")["spec"]["ports"][0]["targetPort"] = "web"
    assert_reported(problems_after(loaded, mutate), "port 80 targets 'web'")


def test_a_deployment_selector_must_match_its_template(loaded):
    def mutate(items):
        find(items, "Deployment", "user-service")["spec"]["selector"]["matchLabels"][
            "app.kubernetes.io/component"] = "other"
    assert_reported(problems_after(loaded, mutate), "spec.selector does not match its own pod "
                                                    "template")


def test_a_wrong_entrypoint_is_reported(loaded):
    def mutate(items):
        container(find(items, "Deployment", "order-service"))["command"][2] = "ecommerce.services.ordr"
        container(find(items, "Job", "saga-orchestrator"))["command"] = [
            "python", "-m", "ecommerce.saga", "run", "--all"]
        container(find(items, "Deployment", "query-service"))["command"] = ["sh", "-c", "echo"]
    assert_reported(problems_after(loaded, mutate),
                    "runs ecommerce.services.ordr, but the registry's order-service is "
                    "ecommerce.services.order", "arguments 'run --all' are not one of",
                    "command ['sh', '-c', 'echo'] must be `python -m ecommerce.services.query")


def test_a_module_that_does_not_exist_is_not_a_real_entrypoint(loaded):
    items = [v.Item(it.step, it.path, copy.deepcopy(it.obj)) for it in loaded]
    problems = v.check_entrypoints(items, module_exists=lambda mod: mod != "ecommerce.services.user")
    assert [p.message for p in problems] == [
        "ecommerce.services.user is not a real entrypoint: `python -m ecommerce.services.user` finds no "
        "such module with a __main__ block"]


def test_module_lookup_needs_a_main_block():
    assert v._find_module("ecommerce.services.order")  # has `if __name__ == "__main__"`
    assert not v._find_module("labkit.runtime.manifests")  # a library module
    assert not v._find_module("ecommerce.services.nope")


def test_a_registry_process_without_a_workload_is_reported(loaded):
    def mutate(items):
        items[:] = [it for it in items if it.name != "event-replay"]
    assert_reported(problems_after(loaded, mutate), "no workload runs event-replay (registry)")


def test_env_vars_must_match_what_the_process_reads(loaded):
    def mutate(items):
        c = container(find(items, "Job", "saga-orchestrator"))
        c["env"] = [e for e in c["env"] if e["name"] != "LABKIT_PAYMENT_SERVICE_URL"]
        c["env"].append({"name": "LABKIT_REDIS_URL", "value": "redis://redis:6379/0"})
        sec = find(items, "Secret", "redis-credentials")
        sec["stringData"]["url"] = "redis://:labkit-redis-lab-only@cache:6379/0"
    assert_reported(problems_after(loaded, mutate),
                    "saga-orchestrator reads LABKIT_PAYMENT_SERVICE_URL but the manifest does not "
                    "set it", "sets LABKIT_REDIS_URL, which saga-orchestrator does not read",
                    "LABKIT_REDIS_URL (secret:redis-credentials/url) must be "
                    "redis://:<password>@<Service>:<port>/<db> of a Service")


def test_peer_urls_must_point_at_the_service(loaded):
    def mutate(items):
        c = container(find(items, "Deployment", "saga-orchestrator-follow"))
        next(e for e in c["env"] if e["name"] == "LABKIT_ORDER_SERVICE_URL")["value"] = \
            "http://order-service:8080"
    assert_reported(problems_after(loaded, mutate), "LABKIT_ORDER_SERVICE_URL="
                                                    "'http://order-service:8080' must be "
                                                    "http://order-service")


def test_credentials_must_come_from_the_secret(loaded):
    def mutate(items):
        c = container(find(items, "Deployment", "command-service"))
        pg = next(e for e in c["env"] if e["name"] == "LABKIT_PG_URL")
        pg.pop("valueFrom")
        pg["value"] = "postgresql://labkit:hunter2@postgres:5432/labkit"
        items.append(v.Item("00-base", Path("cm.yaml"), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "db", "namespace": "ecommerce-microservices"},
            "data": {"POSTGRES_PASSWORD": "hunter2"}}))
        sec = container(find(items, "StatefulSet", "postgres"))
        next(e for e in sec["env"] if e["name"] == "POSTGRES_PASSWORD")["valueFrom"][
            "secretKeyRef"]["key"] = "password"
    assert_reported(problems_after(loaded, mutate),
                    "LABKIT_PG_URL holds a password in a literal URL",
                    "LABKIT_PG_URL must come from the database Secret",
                    "ConfigMap ecommerce-microservices/db: key POSTGRES_PASSWORD looks like a "
                    "credential", "reads Secret postgres-credentials key password, which the "
                    "manifests do not define")


# --- RBAC, routing, network policies -----------------------------------------------------------

def test_rbac_wildcards_and_secrets_are_reported(loaded):
    def mutate(items):
        role = find(items, "Role", "labkit-student")
        role["rules"].append({"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["*"]})
    assert_reported(problems_after(loaded, mutate), "wildcard in apiGroups", "wildcard in verbs",
                    "grants access to Secrets")


def test_the_student_must_be_able_to_apply_and_read_logs(loaded):
    def mutate(items):
        role = find(items, "Role", "labkit-student")
        role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/log"]]
        for r in role["rules"]:
            if r["resources"] == ["gateways", "httproutes"]:
                r["verbs"] = ["get", "list", "create"]
    assert_reported(problems_after(loaded, mutate), "must allow get on pods/log",
                    "must allow patch on httproutes")


def test_websocket_subresources_need_get_and_create(loaded):
    """The port-forward and exec websockets are GETs: a Role with only `create` is refused."""
    def mutate(items):
        for name in ("labkit-student", "labkit-student-load-tester"):
            for r in find(items, "Role", name)["rules"]:
                if r["resources"] in (["pods/portforward"], ["pods/exec"]):
                    r["verbs"] = ["create"]
    assert_reported(problems_after(loaded, mutate), "must allow get on pods/portforward",
                    "must allow get on pods/exec")


def test_the_real_rbac_grants_get_and_create_on_both_websockets(loaded):
    verbs = {res: set(r["verbs"]) for name in ("labkit-student", "labkit-student-load-tester")
             for r in find(loaded, "Role", name)["rules"] for res in r["resources"]}
    assert verbs["pods/portforward"] == {"get", "create"}
    assert verbs["pods/exec"] == {"get", "create"}
    assert "secrets" not in verbs  # no direct access; README says what workloads can read


def test_the_student_may_do_what_doctor_asks_for(loaded):
    from labkit.runtime.cluster import REQUIRED_ACCESS

    rules = find(loaded, "Role", "labkit-student")["rules"]
    for verb, group, resource in REQUIRED_ACCESS:
        assert any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in rules), (verb, group, resource)


def test_every_lab_workload_mounts_the_plugins_configmap(loaded):
    """lab.deploy_code in cluster mode writes ConfigMap labkit-plugins; every pod running the
    lab's code reads it at LABKIT_PLUGINS_DIR (optional: no ConfigMap, no plugins)."""
    from labkit.runtime.cluster import PLUGINS_CONFIGMAP

    workloads = [it.obj for it in loaded if m.pod_template(it.obj) is not None
                 and "ecommerce" in " ".join(container(it.obj).get("command") or [])]
    assert len(workloads) >= 12
    for obj in workloads:
        spec = m.pod_template(obj)["spec"]
        volume = next(v for v in spec["volumes"] if v.get("configMap"))
        assert volume["configMap"] == {"name": PLUGINS_CONFIGMAP, "optional": True}
        c = container(obj)
        mount = next(vm for vm in c["volumeMounts"] if vm["name"] == volume["name"])
        assert mount["readOnly"] is True
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["LABKIT_PLUGINS_DIR"] == mount["mountPath"], obj["metadata"]["name"]


def test_every_object_carries_the_created_by_annotation(loaded):
    for it in loaded:
        assert m.created_by_labkit(it.obj), it.where
        template = m.pod_template(it.obj)
        if template is not None:  # what `kubectl apply -k` (commonAnnotations) sets as well
            assert template["metadata"]["annotations"][m.CREATED_BY] == m.CREATED_BY_VALUE
    pg = find(loaded, "StatefulSet", "postgres")
    claim = pg["spec"]["volumeClaimTemplates"][0]["metadata"]  # kustomize skips claim templates
    assert claim["annotations"][m.CREATED_BY] == m.CREATED_BY_VALUE


def test_a_step_without_the_created_by_annotation_is_reported(tmp_path: Path):
    root = copy_repo(tmp_path)
    kust = root / "03-cqrs" / "kustomization.yaml"
    data = yaml.safe_load(kust.read_text())
    del data["commonAnnotations"]
    kust.write_text(yaml.safe_dump(data))
    assert_reported(non_entry(v.validate_all(root=root)),
                    "03-cqrs/kustomization.yaml: must set commonAnnotations {labkit.io/created-by")


def test_a_gateway_data_plane_in_the_lab_namespace_is_admitted_and_contained(loaded):
    gateway_peer = {"podSelector": {"matchLabels": {v.GATEWAY_NAME_LABEL: v.GATEWAY_NAME}}}

    def mutate(items):
        pol = find(items, "NetworkPolicy", "allow-ingress-query-service")
        for rule in pol["spec"]["ingress"]:
            rule["from"] = [p for p in rule["from"] if p != gateway_peer]
        plane = find(items, "NetworkPolicy", "allow-gateway-data-plane")
        plane["spec"]["egress"][0]["to"][0]["podSelector"] = {}  # postgres, redis, ...
        plane["spec"]["egress"][1]["to"][0]["namespaceSelector"]["matchExpressions"][0][
            "values"].append("kube-system")
    assert_reported(problems_after(loaded, mutate),
                    "query-service's ingress does not admit a Gateway data plane in its own "
                    "namespace", "may reach only the routed services, not", "postgres",
                    "may reach only the gateway controllers' namespaces")

    def drop(items):
        items[:] = [it for it in items if it.name != "allow-gateway-data-plane"]
    assert_reported(problems_after(loaded, drop), "no NetworkPolicy for a Gateway data plane")


def test_redis_runs_with_the_secret_password_and_a_fixed_release(loaded):
    def mutate(items):
        c = container(find(items, "Deployment", "redis"))
        c["image"] = "redis:7.4.2-alpine"
        c["args"] = ["redis-server", "--protected-mode", "no"]
        q = container(find(items, "Deployment", "query-service"))
        url = next(e for e in q["env"] if e["name"] == "LABKIT_REDIS_URL")
        url.pop("valueFrom")
        url["value"] = "redis://redis:6379/0"
    assert_reported(problems_after(loaded, mutate),
                    "image redis:7.4.2-alpine has CVE-2025-49844, fixed in 7.4.6",
                    "redis-server must run with --requirepass $(VAR)",
                    "redis-server must keep --protected-mode yes",
                    "LABKIT_REDIS_URL must come from the redis-credentials Secret")


def test_a_redis_url_with_another_password_is_reported(loaded):
    def mutate(items):
        sec = find(items, "Secret", "redis-credentials")
        sec["stringData"]["url"] = "redis://:stale@redis:6379/0"
    assert_reported(problems_after(loaded, mutate),
                    "carries a password other than the Secret's `password` key")


def test_cluster_wide_rbac_is_reported(loaded):
    def mutate(items):
        items.append(v.Item("00-base", Path("x.yaml"), {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "x"}, "rules": []}))
    assert_reported(problems_after(loaded, mutate), "must be namespaced")


def test_routes_must_match_the_registry(loaded):
    def mutate(items):
        route = find(items, "HTTPRoute", "ecommerce-routes")
        route["spec"]["rules"] = [r for r in route["spec"]["rules"]
                                  if r["matches"][0]["path"]["value"] != "/api/payments"]
        route["spec"]["rules"][0]["backendRefs"][0]["port"] = 8080
        ing = find(items, "Ingress", "ecommerce-ingress")
        ing["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/rewrite-target": "/"}
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "users"
    assert_reported(problems_after(loaded, mutate),
                    "HTTPRoute: must route prefix /api/payments to payment-service (got None)",
                    "backendRef user-service:8080 is not a Service port",
                    "rewrite-target rewrites every path", "backend users:80 is not a Service port")


def test_an_allow_rule_that_is_not_a_call_path_is_reported(loaded):
    def mutate(items):
        pol = find(items, "NetworkPolicy", "allow-ingress-postgres")
        pol["spec"]["ingress"].append({
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "query-service"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]})
    assert_reported(problems_after(loaded, mutate),
                    "allows query-service -> postgres:5432, which is not a real call path")


def test_an_allow_everything_rule_is_reported(loaded):
    def mutate(items):
        pol = find(items, "NetworkPolicy", "allow-ingress-redis")
        pol["spec"]["ingress"].append({})
    assert_reported(problems_after(loaded, mutate), "allows any port or any peer")


def test_a_blocked_call_path_is_reported(loaded):
    def mutate(items):
        pol = find(items, "NetworkPolicy", "allow-egress-saga-orchestrator")
        pol["spec"]["egress"] = [r for r in pol["spec"]["egress"] if r["to"][0]["podSelector"][
            "matchLabels"]["app.kubernetes.io/name"] != "payment-service"]
        items[:] = [it for it in items if it.name != "default-deny-all"]
    assert_reported(problems_after(loaded, mutate),
                    "real call path saga-orchestrator -> payment-service:8080 is blocked: no egress",
                    "no default-deny NetworkPolicy")


def test_the_real_call_paths_come_from_the_registry():
    paths = v.real_call_paths()
    assert ("saga-orchestrator", "payment-service", 8080) in paths
    assert ("query-service", "redis", 6379) in paths
    assert ("query-service", "postgres", 5432) not in paths
    assert ("event-replay", "postgres", 5432) in paths
    assert ("gateway", "command-service", 8080) in paths
    assert ("load-tester", "event-store-api", 8080) in paths


# --- labels, workloads, files --------------------------------------------------------------------

def test_labels_and_explicit_namespaces_are_required(loaded):
    def mutate(items):
        obj = find(items, "Service", "redis")
        del obj["metadata"]["labels"]["app.kubernetes.io/part-of"]
        del obj["metadata"]["namespace"]
        m.pod_template(find(items, "Deployment", "redis"))["metadata"]["labels"].pop(m.STEP_LABEL)
    assert_reported(problems_after(loaded, mutate), "missing label(s) app.kubernetes.io/part-of",
                    "metadata.namespace must be set explicitly",
                    "pod template misses label(s) labkit.io/step")


def test_course_workload_settings_are_checked(loaded):
    def mutate(items):
        find(items, "CronJob", "event-processor")["spec"]["concurrencyPolicy"] = "Allow"
        del find(items, "Job", "saga-orchestrator")["spec"]["ttlSecondsAfterFinished"]
        find(items, "Deployment", "command-service")["spec"]["replicas"] = 1
        find(items, "StatefulSet", "postgres")["spec"].pop("volumeClaimTemplates")
    assert_reported(problems_after(loaded, mutate), "concurrencyPolicy must be Forbid",
                    "must set ttlSecondsAfterFinished", "must run 2 replicas",
                    "needs a PersistentVolumeClaim")


def copy_repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    shutil.copy(REPO / "Dockerfile", tmp_path / "Dockerfile")
    return tmp_path / "manifests"


def non_entry(problems: list[v.Problem]) -> list[str]:
    return [str(p) for p in problems if "finds no such module" not in p.message]


def test_an_unlisted_or_missing_file_in_a_step_is_reported(tmp_path: Path):
    root = copy_repo(tmp_path)
    (root / "03-cqrs" / "extra.yaml").write_text("")
    kust = root / "02-saga" / "kustomization.yaml"
    data = yaml.safe_load(kust.read_text())
    data["resources"].append("gone.yaml")
    data["namespace"] = "other"
    kust.write_text(yaml.safe_dump(data))
    assert_reported(non_entry(v.validate_all(root=root)), "does not list extra.yaml",
                    "lists gone.yaml, which does not exist", "uses namespace")


def test_dockerfile_rules(tmp_path: Path):
    root = copy_repo(tmp_path)
    df = tmp_path / "Dockerfile"
    base = re.search(r"^FROM (\S+) AS build", df.read_text(), re.M).group(1)
    text = df.read_text().replace("USER 10001:10001", "USER root").replace(base, "python:latest")
    text += "RUN apt-get install -y gcc\n"
    df.write_text(text)
    assert_reported(non_entry(v.validate_all(root=root)), "numeric non-root USER",
                    "base image python:latest must be pinned", "installs packages or build tools")


def test_dockerfile_user_must_match_run_as_user(tmp_path: Path):
    root = copy_repo(tmp_path)
    df = tmp_path / "Dockerfile"
    df.write_text(df.read_text().replace("USER 10001:10001", "USER 20002"))
    assert_reported(non_entry(v.validate_all(root=root)),
                    "runAsUser 10001 differs from the image's USER 20002")


def test_kind_config_rules(tmp_path: Path):
    root = copy_repo(tmp_path)
    cfg = yaml.safe_load((root / "kind-config.yaml").read_text())
    cfg["nodes"] = cfg["nodes"][:2]
    cfg["nodes"][0]["image"] = "kindest/node:v1.29.2"
    cfg["nodes"][0]["extraPortMappings"] = []
    (root / "kind-config.yaml").write_text(yaml.safe_dump(cfg))
    assert_reported(non_entry(v.validate_all(root=root)), "must have 1 control-plane and 2 workers",
                    f"older than the validated {v.DEFAULT_K8S_VERSION}", "must map host ports 80 and 443")
