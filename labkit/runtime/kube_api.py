"""The thin seam between the cluster runtime and the Kubernetes API.

`KubeApi` is everything `ClusterRuntime` asks of a cluster, with plain dicts in and out.
`KubernetesApi` implements it with the official client (dynamic client for generic objects,
server-side apply with an explicit namespace per object); the unit tests use a fake.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol


class KubeApi(Protocol):
    def context(self) -> str:
        """A human description of where we are connected (context and server)."""

    def server_version(self) -> str: ...

    def has_kind(self, api_version: str, kind: str) -> bool: ...

    def apply(self, obj: dict[str, Any], *, namespace: str | None, field_manager: str) -> dict[str, Any]:
        """Server-side apply; `namespace` is None for cluster-scoped kinds."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None
            ) -> dict[str, Any] | None: ...

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, *,
                     label_selector: str | None = None, field_selector: str | None = None
                     ) -> list[dict[str, Any]]:
        """Objects of a kind; [] when the kind is not served or the namespace is gone."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, propagation: str = "Background") -> bool:
        """True if a delete was issued, False if it was already gone."""

    def pod_log(self, name: str, namespace: str, *, container: str | None = None,
                tail_lines: int | None = None, previous: bool = False) -> str: ...

    def access_review(self, verb: str, group: str, resource: str, namespace: str | None
                      ) -> tuple[bool, str]:
        """SelfSubjectAccessReview: (allowed, reason)."""

    def port_forward(self, pod: str, namespace: str, port: int) -> tuple[socket.socket, Callable[[], None]]:
        """A connected socket to `port` inside `pod`, and a function that closes the tunnel."""


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404


class KubernetesApi:
    """`KubeApi` over the official kubernetes client."""

    def __init__(self, api_client: Any, context_name: str = "") -> None:
        self.api_client = api_client
        self.context_name = context_name
        self._dyn: Any = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, context: str | None = None) -> KubernetesApi:
        """In-cluster config if running in a pod, else the kubeconfig (and `context`)."""
        try:
            from kubernetes import client, config
        except ModuleNotFoundError:  # `make lab` installs it only for cluster mode
            from labkit.runtime.k8s_errors import ClusterError

            raise ClusterError("Cluster mode needs the Kubernetes client, which `make lab` "
                               "installs only for it: run `LABKIT_MODE=cluster make lab` (or "
                               "`.venv/bin/pip install -e '.[cluster]'`).") from None

        name = "in-cluster"
        try:
            config.load_incluster_config()
            api_client = client.ApiClient()
        except config.ConfigException:
            api_client = config.new_client_from_config(context=context)
            with contextlib.suppress(Exception):
                _, active = config.list_kube_config_contexts()
                name = context or active.get("name", "")
        return cls(api_client, name)

    @property
    def dyn(self) -> Any:
        if self._dyn is None:
            from kubernetes.dynamic import DynamicClient

            self._dyn = DynamicClient(self.api_client)
        return self._dyn

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    # -- KubeApi ------------------------------------------------------------------------------
    def context(self) -> str:
        host = getattr(self.api_client.configuration, "host", "")
        return f"{self.context_name} ({host})" if self.context_name else host

    def server_version(self) -> str:
        from kubernetes import client

        info = client.VersionApi(self.api_client).get_code(_request_timeout=(5, 15))
        return str(info.git_version)

    def has_kind(self, api_version: str, kind: str) -> bool:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            self._resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        return True

    def apply(self, obj: dict[str, Any], *, namespace: str | None, field_manager: str) -> dict[str, Any]:
        res = self._resource(obj["apiVersion"], obj["kind"])
        kwargs: dict[str, Any] = {"body": obj, "name": obj["metadata"]["name"],
                                  "field_manager": field_manager, "force_conflicts": True}
        if res.namespaced:
            kwargs["namespace"] = namespace
        return self.dyn.server_side_apply(res, **kwargs).to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None
            ) -> dict[str, Any] | None:
        res = self._resource(api_version, kind)
        try:
            return res.get(name=name, namespace=namespace if res.namespaced else None).to_dict()
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, *,
                     label_selector: str | None = None, field_selector: str | None = None
                     ) -> list[dict[str, Any]]:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            res = self._resource(api_version, kind)
        except ResourceNotFoundError:
            return []
        try:
            out = res.get(namespace=namespace if res.namespaced else None,
                          label_selector=label_selector, field_selector=field_selector).to_dict()
        except Exception as exc:
            if _is_not_found(exc):
                return []
            raise
        items = out.get("items") or []
        for it in items:  # list items carry no kind/apiVersion
            it.setdefault("kind", kind)
            it.setdefault("apiVersion", api_version)
        return items

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               grace_period_seconds: int | None = None, propagation: str = "Background") -> bool:
        res = self._resource(api_version, kind)
        try:
            res.delete(name=name, namespace=namespace if res.namespaced else None,
                       grace_period_seconds=grace_period_seconds,
                       propagation_policy=propagation)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    def pod_log(self, name: str, namespace: str, *, container: str | None = None,
                tail_lines: int | None = None, previous: bool = False) -> str:
        from kubernetes import client

        kwargs: dict[str, Any] = {"previous": previous}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        return str(client.CoreV1Api(self.api_client).read_namespaced_pod_log(name, namespace,
                                                                             **kwargs))

    def access_review(self, verb: str, group: str, resource: str, namespace: str | None
                      ) -> tuple[bool, str]:
        from kubernetes import client

        sub = None
        if "/" in resource:
            resource, sub = resource.split("/", 1)
        attrs = client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                            subresource=sub, namespace=namespace)
        review = client.V1SelfSubjectAccessReview(
            api_version="authorization.k8s.io/v1", kind="SelfSubjectAccessReview",
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs))
        result = client.AuthorizationV1Api(self.api_client).create_self_subject_access_review(review)
        status = result.status
        if status is None:  # the API server always fills it; an empty answer allows nothing
            return False, "the access review came back without a status"
        return bool(status.allowed), str(status.reason or "")

    def port_forward(self, pod: str, namespace: str, port: int
                     ) -> tuple[socket.socket, Callable[[], None]]:
        from kubernetes import client
        from kubernetes.stream import portforward

        pf = portforward(client.CoreV1Api(self.api_client).connect_get_namespaced_pod_portforward,
                         pod, namespace, ports=str(port))
        sock = pf.socket(port)
        sock.setblocking(True)

        def close() -> None:
            with contextlib.suppress(Exception):
                sock.close()
            with contextlib.suppress(Exception):
                pf.close()

        return sock, close
