"""A small recording Kubernetes API server on 127.0.0.1, for the wire-level contract tests.

It answers like a real API server for the calls labkit makes, and no more: discovery (`/version`,
`/api`, `/apis`, each group version's resource list), server-side apply (PATCH with
`application/apply-patch+yaml`), get, list with label selectors, delete (with cascading to owned
objects and, for a namespace, everything in it), pod logs, SelfSubjectAccessReview and the
port-forward websocket (`v4.channel.k8s.io`). Controllers are simulated at once: an applied
Deployment, StatefulSet or Job is ready (or complete) immediately and has one Running pod.

Every request is recorded (`server.requests`), so a test asserts method, path, query and content
type exactly as the real `kubernetes` client sent them. `server.fail(...)` replays an error
answer (a Status object with the given code) for matching requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

# (group, version, kind, plural, namespaced, subresources)
RESOURCES: list[tuple[str, str, str, str, bool, tuple[str, ...]]] = [
    ("", "v1", "Namespace", "namespaces", False, ()),
    ("", "v1", "Node", "nodes", False, ()),
    ("", "v1", "Pod", "pods", True, ("log", "portforward", "exec")),
    ("", "v1", "Service", "services", True, ()),
    ("", "v1", "Secret", "secrets", True, ()),
    ("", "v1", "ConfigMap", "configmaps", True, ()),
    ("", "v1", "ServiceAccount", "serviceaccounts", True, ()),
    ("", "v1", "Event", "events", True, ()),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ()),
    ("apps", "v1", "Deployment", "deployments", True, ()),
    ("apps", "v1", "StatefulSet", "statefulsets", True, ()),
    ("apps", "v1", "ReplicaSet", "replicasets", True, ()),
    ("batch", "v1", "Job", "jobs", True, ()),
    ("batch", "v1", "CronJob", "cronjobs", True, ()),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ()),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", True, ()),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True, ()),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, ()),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False, ()),
    ("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses", False, ()),
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways", True, ()),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", True, ()),
]
APPLY_PATCH = "application/apply-patch+yaml"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.query}"


@dataclass
class Failure:
    method: str
    path: re.Pattern[str]
    status: int
    message: str
    reason: str
    times: int


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """The label selector grammar the API server accepts (=, ==, !=, in, notin, exists, !)."""
    if not selector:
        return True
    for term in re.split(r",(?![^()]*\))", selector):
        term = term.strip()
        if not term:
            continue
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            ok = key in labels and labels[key] in values
            if (op == "in") != ok:
                return False
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", term)
        if m:
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
            continue
        if term.startswith("!"):
            if term[1:] in labels:
                return False
            continue
        if not re.fullmatch(r"[\w./-]+", term):
            raise ValueError(f"unable to parse requirement: {term!r}")
        if term not in labels:
            return False
    return True


class FakeApiServer:
    """`with FakeApiServer() as server:` serves on `server.url` until the block ends."""

    def __init__(self, version: str = "v1.35.0") -> None:
        self.version = version
        self.requests: list[Request] = []
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        #: The field manager whose apply made each object ("kubectl" for `put`'s objects).
        self.managers: dict[tuple[str, str, str, str], str] = {}
        self.denied: set[tuple[str, str]] = set()  # (verb, "resource[/sub]") the user may not
        self.failures: list[Failure] = []
        self.without_groups: set[str] = set()  # groups not served (missing CRDs)
        self.portforward_status = 101
        self.echo_ports: dict[int, Callable[[bytes], bytes]] = {}
        self.lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- test helpers -----------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int, message: str, *, reason: str = "",
             times: int = 1) -> None:
        """Answer the next `times` requests matching `method` and regex `path` with an error."""
        self.failures.append(Failure(method, re.compile(path), status, message, reason, times))

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and (path is None or re.search(path, r.path))]

    def put(self, obj: dict[str, Any], manager: str = "kubectl") -> dict[str, Any]:
        """Create an object directly (a pre-existing object nobody applied through labkit),
        as if field manager `manager` had applied it."""
        info = self._kind_info(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") or ""
        with self.lock:
            stored = self._store(info, obj, namespace)
            self.managers[self._key(info, namespace, stored["metadata"]["name"])] = manager
            return stored

    def find(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            for (k, ns, n, _), obj in self.objects.items():
                if k == kind and n == name and ns == namespace:
                    return obj
        return None

    # -- model ------------------------------------------------------------------------------------
    @staticmethod
    def _kind_info(api_version: str, kind: str) -> tuple[str, str, str, str, bool, tuple[str, ...]]:
        group, _, version = api_version.rpartition("/")
        for r in RESOURCES:
            if r[0] == group and r[1] == version and r[2] == kind:
                return r
        raise KeyError(f"{api_version} {kind}")

    @staticmethod
    def _by_plural(group: str, version: str, plural: str
                   ) -> tuple[str, str, str, str, bool, tuple[str, ...]] | None:
        for r in RESOURCES:
            if r[0] == group and r[1] == version and r[3] == plural:
                return r
        return None

    def _key(self, info: tuple[Any, ...], namespace: str, name: str) -> tuple[str, str, str, str]:
        return (info[2], namespace if info[4] else "", name, info[0])

    def _store(self, info: tuple[Any, ...], obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        obj = json.loads(json.dumps(obj))
        meta = obj.setdefault("metadata", {})
        if info[4]:
            meta["namespace"] = namespace
        key = self._key(info, namespace, meta["name"])
        old = self.objects.get(key)
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = (old or {}).get("metadata", {}).get(
            "creationTimestamp") or "2026-01-01T00:00:00Z"
        meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + 1
        meta["resourceVersion"] = str(len(self.requests))
        if old is not None and old.get("kind") == "Namespace":  # apply merges labels, keeps others
            merged = dict(old["metadata"].get("labels") or {})
            merged.update(meta.get("labels") or {})
            meta["labels"] = merged
        obj["apiVersion"] = f"{info[0]}/{info[1]}" if info[0] else info[1]
        obj["kind"] = info[2]
        self._simulate(obj)
        self.objects[key] = obj
        return obj

    def _simulate(self, obj: dict[str, Any]) -> None:
        """What the controllers would do, at once: ready workloads, one Running pod each."""
        kind, meta, spec = obj["kind"], obj["metadata"], obj.get("spec") or {}
        replicas = spec.get("replicas", 1)
        if kind == "Deployment":
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "updatedReplicas": replicas, "availableReplicas": replicas,
                             "readyReplicas": replicas}
        elif kind == "StatefulSet":
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "readyReplicas": replicas}
        elif kind == "Job" and not spec.get("suspend"):
            obj["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        else:
            return
        template = spec.get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod_name = f"{meta['name']}-{meta['uid'][:5]}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod_name, "namespace": meta["namespace"], "labels": labels,
                            "ownerReferences": [{"apiVersion": obj["apiVersion"], "kind": kind,
                                                 "name": meta["name"], "uid": meta["uid"]}]},
               "spec": template.get("spec") or {},
               "status": {"phase": "Succeeded" if kind == "Job" else "Running",
                          "conditions": [{"type": "Ready", "status": "True"}]}}
        key = ("Pod", meta["namespace"], pod_name, "")
        if key not in self.objects:
            self.objects[key] = {**pod, "metadata": {**pod["metadata"], "uid": str(uuid.uuid4()),
                                                     "creationTimestamp": "2026-01-01T00:00:01Z"}}

    def _delete(self, key: tuple[str, str, str, str]) -> None:
        obj = self.objects.pop(key, None)
        self.managers.pop(key, None)
        if obj is None:
            return
        uid = obj["metadata"]["uid"]
        for k, o in list(self.objects.items()):  # the garbage collector
            refs = (o.get("metadata") or {}).get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                self._delete(k)
        if key[0] == "Namespace":  # the namespace controller
            for k in [k for k in self.objects if k[1] == key[2]]:
                self._delete(k)

    # -- HTTP -------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                body: Any = None
                if raw:
                    body = yaml.safe_load(raw) if ctype == APPLY_PATCH else json.loads(raw)
                req = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                              ctype, body, {k.lower(): v for k, v in self.headers.items()})
                with server.lock:
                    server.requests.append(req)
                server._route(self, req)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        return Handler

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: Any,
              ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _status(self, h: BaseHTTPRequestHandler, code: int, message: str, reason: str = "") -> None:
        reasons = {403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid",
                   500: "InternalError"}
        self._send(h, code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Failure", "message": message,
                             "reason": reason or reasons.get(code, "Unknown"), "code": code})

    def _route(self, h: BaseHTTPRequestHandler, req: Request) -> None:
        for f in self.failures:
            if f.times > 0 and f.method == req.method and f.path.search(req.path):
                f.times -= 1
                self._status(h, f.status, f.message, f.reason)
                return
        path = req.path
        if path.rstrip("/") == "/version":
            major, minor = self.version.lstrip("v").split(".")[:2]
            return self._send(h, 200, {"major": major, "minor": minor, "gitVersion": self.version,
                                       "gitCommit": "0" * 40, "gitTreeState": "clean",
                                       "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                                       "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api":
            return self._send(h, 200, {"kind": "APIVersions", "versions": ["v1"],
                                       "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for r in RESOURCES:
                if r[0] and r[0] not in self.without_groups:
                    groups.setdefault(r[0], [])
                    if r[1] not in groups[r[0]]:
                        groups[r[0]].append(r[1])
            return self._send(h, 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]})
        m = re.fullmatch(r"/api/(v1)(/.*)?|/apis/([^/]+)/([^/]+)(/.*)?", path)
        if not m:
            return self._status(h, 404, "the server could not find the requested resource")
        if m.group(1):
            group, version, rest = "", "v1", m.group(2) or ""
        else:
            group, version, rest = m.group(3), m.group(4), m.group(5) or ""
        if group in self.without_groups:
            return self._status(h, 404, "the server could not find the requested resource")
        if not rest:
            return self._send(h, 200, self._resource_list(group, version))
        parts = rest.strip("/").split("/")
        namespace = ""
        if parts[0] == "namespaces" and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        info = self._by_plural(group, version, parts[0])
        if info is None:
            return self._status(h, 404, "the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else ""
        sub = parts[2] if len(parts) > 2 else ""
        with self.lock:
            return self._resource(h, req, info, namespace, name, sub)

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for r in RESOURCES:
            if r[0] != group or r[1] != version:
                continue
            verbs = ["create"] if r[2] == "SelfSubjectAccessReview" else [
                "create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append({"name": r[3], "singularName": r[2].lower(), "namespaced": r[4],
                              "kind": r[2], "verbs": verbs})
            for sub in r[5]:
                resources.append({"name": f"{r[3]}/{sub}", "singularName": "", "namespaced": r[4],
                                  "kind": "PodLogOptions" if sub == "log" else r[2],
                                  "verbs": ["get"] if sub == "log" else ["create", "get"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    def _resource(self, h: BaseHTTPRequestHandler, req: Request, info: tuple[Any, ...],
                  namespace: str, name: str, sub: str) -> None:
        kind = info[2]
        if kind == "SelfSubjectAccessReview" and req.method == "POST":
            attrs = req.body["spec"]["resourceAttributes"]
            res = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
            allowed = (attrs["verb"], res) not in self.denied
            return self._send(h, 201, {**req.body, "status": {
                "allowed": allowed, "reason": "" if allowed else "RBAC: no rule allows it"}})
        key = self._key(info, namespace, name)
        if sub == "log" and req.method == "GET":
            if key not in self.objects:
                return self._status(h, 404, f'pods "{name}" not found')
            text = f"log of {name} container={req.q('container')} tailLines={req.q('tailLines')}\n"
            return self._send(h, 200, text.encode(), "text/plain")
        if sub == "portforward":
            return self._portforward(h, req, name, namespace)
        if req.method == "PATCH" and name:
            if req.content_type != APPLY_PATCH:
                return self._status(h, 415, f"unsupported patch type {req.content_type}")
            if not req.q("fieldManager"):
                return self._status(h, 422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                                            "Required value: is required for apply patch")
            if namespace and ("Namespace", "", namespace, "") not in self.objects:
                return self._status(h, 404, f'namespaces "{namespace}" not found')
            existed = key in self.objects
            body, manager = req.body, req.q("fieldManager")
            owner = self.managers.setdefault(key, manager)
            if existed and manager != owner:
                # Another field manager's partial apply (e.g. a restart's template annotation):
                # merged into what the first manager applied, which keeps its fields.
                body = _merged(self.objects[key], body)
            obj = self._store(info, body, namespace)
            return self._send(h, 200 if existed else 201, obj)
        if req.method == "GET" and name:
            obj = self.objects.get(key)
            if obj is None:
                return self._status(h, 404, f'{info[3]} "{name}" not found')
            return self._send(h, 200, obj)
        if req.method == "GET":
            try:
                items = [o for k, o in self.objects.items() if k[0] == kind and k[3] == info[0]
                         and (not namespace or k[1] == namespace)
                         and _selector_matches(req.q("labelSelector"),
                                               o["metadata"].get("labels") or {})]
            except ValueError as exc:
                return self._status(h, 400, str(exc), "BadRequest")
            listed = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
            return self._send(h, 200, {"kind": f"{kind}List", "apiVersion": info[1],
                                       "metadata": {"resourceVersion": "1"}, "items": listed})
        if req.method == "DELETE" and name:
            if key not in self.objects:
                return self._status(h, 404, f'{info[3]} "{name}" not found')
            if req.q("dryRun") != "All":
                self._delete(key)
            return self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                       "details": {"name": name, "kind": info[3]}})
        return self._status(h, 405, f"{req.method} is not supported here", "MethodNotAllowed")

    # -- the port-forward websocket ---------------------------------------------------------------
    def _portforward(self, h: BaseHTTPRequestHandler, req: Request, name: str, namespace: str
                     ) -> None:
        if self.portforward_status != 101:
            return self._status(h, self.portforward_status,
                                f'pods "{name}" is forbidden: User "student" cannot get resource '
                                f'"pods/portforward" in API group "" in the namespace "{namespace}"')
        if ("Pod", namespace, name, "") not in self.objects:
            return self._status(h, 404, f'pods "{name}" not found')
        protocols = [p.strip() for p in (req.headers.get("sec-websocket-protocol") or "").split(",")]
        proto = next((p for p in protocols if p in ("v4.channel.k8s.io", "portforward.k8s.io")), "")
        accept = base64.b64encode(hashlib.sha1(
            (req.headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        h.send_response(101, "Switching Protocols")
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        if proto:
            h.send_header("Sec-WebSocket-Protocol", proto)
        h.end_headers()
        h.wfile.flush()
        port = int(req.q("ports") or 0)
        sock = h.connection
        prefix = struct.pack("<H", port)
        _ws_send(sock, b"\x00" + prefix)  # data channel 0: its port
        _ws_send(sock, b"\x01" + prefix)  # error channel 1: its port
        respond = self.echo_ports.get(port, lambda data: b"echo:" + data)
        while True:
            frame = _ws_recv(sock)
            if frame is None:
                break
            opcode, payload = frame
            if opcode == 8:
                with _suppress():
                    _ws_send(sock, b"", opcode=8)
                break
            if opcode == 2 and payload[:1] == b"\x00" and len(payload) > 1:
                _ws_send(sock, b"\x00" + respond(payload[1:]))
        h.close_connection = True


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _ws_send(sock: socket.socket, payload: bytes, opcode: int = 2) -> None:
    n = len(payload)
    header = bytes([0x80 | opcode])
    if n < 126:
        header += bytes([n])
    elif n < 65536:
        header += bytes([126]) + struct.pack(">H", n)
    else:
        header += bytes([127]) + struct.pack(">Q", n)
    sock.sendall(header + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def _ws_recv(sock: socket.socket) -> tuple[int, bytes] | None:
    head = _recv_exact(sock, 2)
    if head is None:
        return None
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        ext = _recv_exact(sock, 2)
        if ext is None:
            return None
        n = struct.unpack(">H", ext)[0]
    elif n == 127:
        ext = _recv_exact(sock, 8)
        if ext is None:
            return None
        n = struct.unpack(">Q", ext)[0]
    mask = _recv_exact(sock, 4) if head[1] & 0x80 else b"\x00\x00\x00\x00"
    data = _recv_exact(sock, n) if n else b""
    if mask is None or data is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _merged(old: Any, new: Any) -> Any:
    """`new` over `old`: maps merge key by key, anything else is replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merged(old.get(k), v)
        return out
    return new


def kubeconfig(url: str, path: str, *, context: str = "fake", current: str | None = None) -> str:
    """Write a kubeconfig pointing at `url` (token auth); `current` may name a missing context."""
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "fake", "cluster": {"server": url}}],
           "users": [{"name": "student", "user": {"token": "t0ken"}}],
           "contexts": [{"name": context, "context": {"cluster": "fake", "user": "student"}}],
           "current-context": current if current is not None else context}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    return path
