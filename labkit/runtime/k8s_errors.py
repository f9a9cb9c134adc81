"""Kubernetes failures as one sentence saying what is wrong and what to do.

`explain(exc, ...)` is pure: it looks at the exception's type name, HTTP status and message, so
the tests need neither a cluster nor, for most cases, the kubernetes client. `ClusterError`
carries that sentence; in Jupyter it renders as the sentence alone, not a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_INSTALL = (
    "kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/"
    "download/v1.6.2/standard-install.yaml"
)

NO_KUBECONFIG = (
    "No kubeconfig found (KUBECONFIG or ~/.kube/config): create a cluster first (`kind create "
    "cluster --config manifests/kind-config.yaml`, `minikube start`, or `aws eks update-kubeconfig "
    "--name <cluster>`), or run the lab without a cluster with LABKIT_MODE=local."
)
NO_CLIENT = (
    "The kubernetes Python client is not installed: `pip install -e '.[lab]'` (cluster mode needs "
    "it), or run the lab without a cluster with LABKIT_MODE=local."
)
MISSING_GATEWAY_CRDS = (
    "The cluster has no Gateway API CRDs (Gateway, HTTPRoute): run cloud-provider-kind with "
    "`--gateway-channel standard` on kind (it installs them), or install them with `"
    + GATEWAY_API_INSTALL + "` and a Gateway implementation."
)


class ClusterError(RuntimeError):
    """A cluster-mode failure with a one-sentence explanation (and, for waits, a diagnosis)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:  # IPython: show the message, not a traceback
        return [f"ClusterError: {self.message}"]


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def api_message(exc: BaseException) -> str:
    """The API server's own message (the Status object's `message`), else str(exc)."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            msg = json.loads(body).get("message")
            if msg:
                return str(msg)
        except ValueError:
            pass
    summary = getattr(exc, "summary", None)
    if callable(summary):
        try:
            return str(summary())
        except Exception:  # pragma: no cover - defensive
            pass
    reason = getattr(exc, "reason", None)
    return str(reason or exc).strip()


_CONNECTION_TYPES = {
    "MaxRetryError", "NewConnectionError", "ConnectionRefusedError", "ConnectTimeoutError",
    "ConnectionError", "ProtocolError", "ReadTimeoutError", "TimeoutError", "SSLError",
    "ConnectionResetError", "socket.timeout", "gaierror", "NameResolutionError",
}


def _handshake_message(reason: str) -> str:
    """The Status message inside websocket-client's "Handshake status 403 Forbidden -+-+- ..."."""
    parts = reason.split(" -+-+- ")
    body = parts[-1].strip()
    if body.startswith(("b'", 'b"')):
        body = body[2:-1]
    match = re.search(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"', body)
    if match:
        return match.group(1).replace('\\"', '"')
    return parts[0].strip()


def _type_names(exc: BaseException) -> set[str]:
    return {t.__name__ for t in type(exc).__mro__}


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
        if len(out) > 5:
            break
    return out


def explain(exc: BaseException, *, action: str = "talk to the cluster", namespace: str = "",
            server: str = "") -> str:
    """One sentence: what went wrong and what to do."""
    if isinstance(exc, ClusterError):
        return exc.message
    for e in _chain(exc):
        names = _type_names(e)
        text = str(e)
        if isinstance(e, ModuleNotFoundError) and "kubernetes" in text:
            return NO_CLIENT
        if "ConfigException" in names or (isinstance(e, FileNotFoundError) and "kube" in text):
            missing = re.search(r"Expected object with name (.*) in (.*)/(contexts|clusters|users) "
                                r"list", text)
            if missing and missing.group(3) == "contexts":
                what = (f"current context {missing.group(1)!r} is not in its contexts list"
                        if missing.group(1) else "has no current context")
                return (f"Your kubeconfig ({missing.group(2)}) {what}: pick one with `kubectl "
                        "config use-context <name>` (`kubectl config get-contexts` lists them; "
                        "kind: `kind export kubeconfig --name labkit`).")
            if missing:
                return (f"Your kubeconfig ({missing.group(2)}) names {missing.group(3)[:-1]} "
                        f"{missing.group(1)!r}, which it does not define: regenerate it (kind: "
                        "`kind export kubeconfig --name labkit`; EKS: `aws eks update-kubeconfig "
                        "--name <cluster>`).")
            if "No configuration found" in text or "not exist" in text or "No such file" in text \
                    or "Invalid kube-config" in text:
                return NO_KUBECONFIG
            if "context" in text.lower():
                return (f"Your kubeconfig has no usable context ({text.strip()}): pick one with "
                        "`kubectl config use-context <name>` (`kubectl config get-contexts` lists "
                        "them).")
            return f"Your kubeconfig cannot be used ({text.strip()}): fix it or regenerate it."
        if "ResourceNotFoundError" in names:
            if GATEWAY_GROUP in text:
                return MISSING_GATEWAY_CRDS
            return (f"The cluster does not serve this kind ({text.strip()}): install the CRD or "
                    "controller that provides it.")
        if names & _CONNECTION_TYPES:
            where = f" at {server}" if server else ""
            return (f"The Kubernetes API server{where} is unreachable: start the cluster (kind: "
                    "`docker ps` shows its nodes; `kind get clusters`; minikube: `minikube start`) "
                    "or select the right one with `kubectl config use-context`, then retry.")
    status = status_of(exc)
    message = api_message(exc)
    ns = f" in namespace {namespace}" if namespace else ""
    handshake = re.search(r"Handshake status (\d{3})", message)
    if status in (0, None) and handshake:  # a websocket upgrade (port-forward, exec) refused
        status = int(handshake.group(1))
        message = _handshake_message(message)
        if status == 403:
            return (f"You are not allowed to {action}{ns} ({message}): the websocket upgrade "
                    "needs both `get` and `create` on pods/portforward (and pods/exec for exec); "
                    "ask your instructor to apply the current manifests/00-base/rbac.yaml, or use "
                    "an admin context.")
    if status == 401:
        return ("The API server rejected your credentials (401 Unauthorized): your kubeconfig's "
                "token or certificate has expired; refresh it (kind: `kind export kubeconfig --name "
                "labkit`; EKS: `aws eks update-kubeconfig --name <cluster>`).")
    if status == 403:
        return (f"You are not allowed to {action}{ns} ({message}): ask your instructor to bind the "
                "labkit-student Role (manifests/00-base/rbac.yaml) to you, or use an admin context.")
    if status == 404:
        match = re.search(r'namespaces? "([^"]+)" not found', message)
        if match:
            return (f"Namespace {match.group(1)} does not exist: apply the base step first "
                    "(as a cluster admin: `kubectl apply -k manifests/00-base`).")
        if GATEWAY_GROUP in message or (
                "the server could not find the requested resource" in message
                and ("gateway" in action.lower() or "httproute" in action.lower())):
            return MISSING_GATEWAY_CRDS
        return f"Not found while trying to {action}{ns}: {message}."
    if status == 409:
        return (f"Conflict while trying to {action}{ns} ({message}): another field manager owns "
                "these fields; re-run to retry, or delete the object and apply again.")
    if status == 422 or status == 400:
        return f"The API server rejected the object while trying to {action}{ns}: {message}."
    if status is not None and status >= 500:
        return (f"The API server failed ({status}) while trying to {action}{ns}: {message}; wait a "
                "moment and retry.")
    if status is not None:
        return f"Kubernetes API error {status} while trying to {action}{ns}: {message}."
    return f"Could not {action}{ns}: {type(exc).__name__}: {str(exc).strip() or 'no detail'}."
