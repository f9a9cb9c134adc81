"""One clear sentence per cluster failure, from the real kubernetes client's exceptions.

The last tests use the real client end to end: no kubeconfig, and a kubeconfig whose API
server does not answer (a closed local port), as a student without a running cluster has.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic.exceptions import ResourceNotFoundError, api_exception

from labkit.runtime import kube_api
from labkit.runtime.cluster import ClusterRuntime
from labkit.runtime.k8s_errors import (
    MISSING_GATEWAY_CRDS,
    NO_CLIENT,
    NO_KUBECONFIG,
    ClusterError,
    api_message,
    explain,
)


def api_error(status: int, message: str, reason: str = "") -> ApiException:
    e = ApiException(status=status, reason=reason)
    e.body = json.dumps({"kind": "Status", "status": "Failure", "message": message})
    return e


def dynamic_error(status: int, message: str) -> Exception:
    try:
        raise api_error(status, message)
    except ApiException as e:
        return api_exception(e)


def test_no_kubeconfig():
    exc = ConfigException("Invalid kube-config file. No configuration found.")
    assert explain(exc) == NO_KUBECONFIG


def test_a_bad_context():
    exc = ConfigException("Expected key current-context in kube-config")
    assert "kubectl config use-context" in explain(exc)


def test_missing_client():
    assert explain(ModuleNotFoundError("No module named 'kubernetes'")) == NO_CLIENT


def test_missing_gateway_crds_from_discovery():
    exc = ResourceNotFoundError("No matches found for {'api_version': "
                                "'gateway.networking.k8s.io/v1', 'kind': 'HTTPRoute'}")
    assert explain(exc) == MISSING_GATEWAY_CRDS


def test_another_missing_kind():
    exc = ResourceNotFoundError("No matches found for {'api_version': 'example.com/v1', "
                                "'kind': 'Widget'}")
    assert explain(exc).startswith("The cluster does not serve this kind")


@pytest.mark.parametrize("make", [api_error, dynamic_error])
def test_forbidden(make):
    exc = make(403, 'deployments.apps "order-service" is forbidden: User "student" cannot patch '
                    'resource "deployments" in API group "apps" in the namespace "lab"')
    msg = explain(exc, action="apply Deployment lab/order-service", namespace="lab")
    assert msg.startswith("You are not allowed to apply Deployment lab/order-service in namespace "
                          'lab (deployments.apps "order-service" is forbidden')
    assert msg.endswith("or use an admin context.")


@pytest.mark.parametrize("make", [api_error, dynamic_error])
def test_missing_namespace(make):
    exc = make(404, 'namespaces "ecommerce-microservices" not found')
    assert explain(exc) == ("Namespace ecommerce-microservices does not exist: apply the base step "
                            "first (as a cluster admin: `kubectl apply -k manifests/00-base`).")


def test_expired_credentials():
    assert "401 Unauthorized" in explain(api_error(401, "Unauthorized"))


def test_server_errors_and_others_keep_the_api_message():
    assert "wait a moment and retry" in explain(api_error(503, "etcd leader changed"))
    assert "Deployment.apps \"x\" is invalid" in explain(
        api_error(422, 'Deployment.apps "x" is invalid: spec.replicas: Invalid value'))
    assert explain(ValueError("boom"), action="do it") == "Could not do it: ValueError: boom."


def test_api_message_reads_the_status_body():
    assert api_message(api_error(403, "nope")) == "nope"
    assert api_message(ApiException(status=500, reason="Internal")) == "Internal"


def test_cluster_error_renders_without_a_traceback_in_jupyter():
    err = ClusterError("Something: do this.")
    assert err._render_traceback_() == ["ClusterError: Something: do this."]
    assert str(err) == "Something: do this."


# --- the real client, no cluster ---------------------------------------------------------------

@pytest.fixture
def kubeconfig(monkeypatch, tmp_path: Path):
    """Point the kubernetes client at a kubeconfig path under tmp_path (not the user's)."""
    from kubernetes.config import kube_config

    path = tmp_path / "config"
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


def test_real_client_without_kubeconfig(kubeconfig):
    rt = ClusterRuntime(kube_client_factory=kube_api.KubernetesApi.from_config, progress=False)
    with pytest.raises(ClusterError) as err:
        rt.up()
    assert err.value.message == NO_KUBECONFIG
    assert rt.doctor() == [("kubeconfig", False, NO_KUBECONFIG)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_client_with_an_unreachable_api_server(kubeconfig):
    server = f"https://127.0.0.1:{closed_port()}"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: me
  user: {{token: abc}}
contexts:
- name: kind-gone
  context: {{cluster: gone, user: me}}
current-context: kind-gone
""")
    rt = ClusterRuntime(kube_client_factory=kube_api.KubernetesApi.from_config, progress=False)
    with pytest.raises(ClusterError) as err:
        rt.up()
    assert err.value.message.startswith(f"The Kubernetes API server at kind-gone ({server}) is "
                                        "unreachable: start the cluster")
    checks = rt.doctor()
    assert checks[0].check == "kubeconfig" and checks[0].ok
    assert checks[1].check == "api server" and checks[1].ok is False


def test_a_missing_current_context_is_not_a_missing_kubeconfig():
    exc = ConfigException("Invalid kube-config file. Expected object with name gone in "
                          "/home/me/.kube/config/contexts list")
    msg = explain(exc)
    assert msg != NO_KUBECONFIG
    assert "current context 'gone' is not in its contexts list" in msg
    assert "kubectl config use-context" in msg
    empty = explain(ConfigException("Invalid kube-config file. Expected object with name  in "
                                    "/k/contexts list"))
    assert "has no current context" in empty


def test_a_refused_websocket_upgrade_is_the_rbac_sentence():
    """kubernetes.stream wraps websocket-client's handshake error as ApiException(status=0)."""
    exc = ApiException(status=0, reason=(
        'Handshake status 403 Forbidden -+-+- {"content-type": "application/json"} -+-+- '
        'b\'{"kind":"Status","message":"pods \\"order-service-1\\" is forbidden: User '
        '\\"student\\" cannot get resource \\"pods/portforward\\"","code":403}\''))
    msg = explain(exc, action="port-forward to pod order-service-1", namespace="lab")
    assert msg.startswith("You are not allowed to port-forward to pod order-service-1 in "
                          "namespace lab (pods \"order-service-1\" is forbidden")
    assert "`get` and `create` on pods/portforward" in msg
