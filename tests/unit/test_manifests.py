"""manifests.py: loading steps, the apply plan, container specs, namespace retargeting."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecommerce.config import DEFAULT_NAMESPACE
from ecommerce.services.registry import SERVICES, TASKS
from labkit.runtime import manifests as m


def test_every_step_loads_in_kustomization_order():
    steps = m.load_all()
    assert list(steps) == list(m.STEPS)
    base = steps["00-base"]
    assert base[0]["kind"] == "Namespace" and base[0]["metadata"]["name"] == DEFAULT_NAMESPACE
    assert {o["metadata"]["name"] for o in base if o["kind"] == "Namespace"} == {
        DEFAULT_NAMESPACE, "testing"}
    for step, objs in steps.items():
        assert objs, step
        assert all(o["metadata"]["labels"][m.STEP_LABEL] == step for o in objs)


def test_load_step_accepts_a_path_and_reports_unknown_steps(tmp_path: Path):
    assert m.load_step(m.MANIFESTS_DIR / "03-cqrs") == m.load_step("03-cqrs")
    with pytest.raises(m.ManifestError, match="no manifest step '99-nope'"):
        m.load_step("99-nope")


def test_a_listed_file_that_is_missing_is_an_error(tmp_path: Path):
    d = tmp_path / "03-cqrs"
    shutil.copytree(m.MANIFESTS_DIR / "03-cqrs", d)
    (d / "query-service.yaml").unlink()
    with pytest.raises(m.ManifestError, match=r"lists query-service\.yaml, which does not exist"):
        m.load_step(d)
    (d / "kustomization.yaml").unlink()
    with pytest.raises(m.ManifestError, match=r"no kustomization\.yaml"):
        m.load_step(d)


def test_plan_puts_namespaces_first_and_crd_kinds_after_builtin_kinds():
    objs = [o for step in m.load_all().values() for o in step]
    ordered = m.plan(reversed(objs))
    kinds = [o["kind"] for o in ordered]
    assert kinds[:2] == ["Namespace", "Namespace"]
    last_builtin = max(i for i, k in enumerate(kinds) if k not in ("Gateway", "HTTPRoute"))
    first_crd = min(i for i, k in enumerate(kinds) if k in ("Gateway", "HTTPRoute"))
    assert first_crd > last_builtin
    assert kinds.index("Gateway") < kinds.index("HTTPRoute")
    assert kinds.index("Secret") < kinds.index("StatefulSet")
    assert max(i for i, k in enumerate(kinds) if k == "Service") < kinds.index("Deployment")
    assert len(ordered) == len(objs)


def test_plan_is_stable_within_a_kind_and_puts_unknown_kinds_last():
    objs = [
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}},
    ]
    assert [o["metadata"]["name"] for o in m.plan(objs)] == ["ns", "b", "a", "w"]


def test_container_specs_give_commands_env_and_ports():
    specs = m.container_specs()
    order = specs["order-service"]
    assert order.command == ["python", "-m", "ecommerce.services.order"]
    assert order.module == "ecommerce.services.order" and order.args == []
    assert set(order.env_names) == set(SERVICES["order-service"].env)
    assert order.env["LABKIT_PG_URL"].value is None
    assert order.env["LABKIT_PG_URL"].source == "secret:postgres-credentials/url"
    assert order.literal_env["LABKIT_PORT"] == "8080"
    assert order.literal_env["LABKIT_FAULTS"] == "0"  # off unless asked for (issue 11)
    assert order.env["LABKIT_ADMIN_TOKEN"].source == "secret:labkit-admin/token"
    assert order.ports == {"http": 8080}
    assert order.kind == "Deployment" and order.step == "02-saga"

    assert specs["saga-orchestrator"].kind == "Job"
    assert specs["saga-orchestrator"].args == ["run", "--pending"]
    assert specs["saga-orchestrator-follow"].args == ["run", "--follow"]
    assert specs["saga-orchestrator"].literal_env["LABKIT_PAYMENT_SERVICE_URL"] == \
        "http://payment-service"
    assert specs["event-processor"].kind == "CronJob" and specs["event-processor"].args == []
    assert specs["event-processor-follow"].args == ["--follow"]
    assert specs["event-replay"].command == ["python", "-m", "ecommerce.projections.replay", "--all"]
    assert specs["postgres"].kind == "StatefulSet" and specs["postgres"].module is None


def test_every_registry_process_has_a_container_spec():
    specs = m.container_specs()
    modules = {c.module for c in specs.values()}
    for spec in [*SERVICES.values(), *TASKS.values()]:
        assert spec.module in modules, spec.name


def test_container_specs_need_no_kubernetes_client():
    """The local runtime reads the manifests on a laptop: no kubernetes client gets loaded."""
    code = ("import sys; import labkit.runtime.manifests as m; specs = m.container_specs(); "
            "assert specs; print(sorted(n for n in sys.modules if n.split('.')[0] == 'kubernetes'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_retarget_moves_every_reference_to_the_lab_namespace_but_not_testing():
    objs = m.retarget(m.load_step("00-base") + m.load_step("01-networking"), "lab-2")
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    assert namespaces == {"lab-2", "testing"}
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and
                   o["metadata"]["namespace"] == "testing")
    assert binding["subjects"][0]["namespace"] == "lab-2"
    tester = next(o for o in objs if o["metadata"]["name"] == "load-tester")
    assert tester["metadata"]["namespace"] == "testing"
    text = repr(objs)
    assert DEFAULT_NAMESPACE not in text
    # The originals are untouched.
    assert m.load_step("00-base")[0]["metadata"]["name"] == DEFAULT_NAMESPACE


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"app": "a"}, {"app": "a", "x": "y"}, True),
        ({"app": "a"}, {"app": "b"}, False),
        ({}, {"app": "a"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "a"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
         {"app": "b"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]},
         {"app": "a"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
        (None, {"app": "a"}, False),
    ],
)
def test_selector_matches(selector, labels, expected):
    assert m.selector_matches(selector, labels) is expected


def test_describe_and_key():
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "x", "namespace": "n"}}
    assert m.describe(obj) == "Deployment n/x"
    assert m.key(obj) == ("apps/v1", "Deployment", "n", "x")
    assert m.describe({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}) == \
        "Namespace n"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("step", m.STEPS)
def test_kubectl_kustomize_builds_the_same_objects_as_labkit(step):
    """`kubectl apply -k manifests/<step>` and `labkit up` apply exactly the same objects."""
    import subprocess

    import yaml

    out = subprocess.run(["kubectl", "kustomize", str(m.MANIFESTS_DIR / step)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    built = [o for o in yaml.safe_load_all(out) if o]
    ours = m.load_step(step)
    assert sorted(built, key=m.key) == sorted(ours, key=m.key)
