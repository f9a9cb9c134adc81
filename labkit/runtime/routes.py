"""The routing rules of `manifests/01-networking`, read from the files, and how a request matches.

Pure (PyYAML via `manifests`, no I/O besides reading the files): the local gateway
(`labkit.runtime.gateway`) routes with these rules, `lab.routes()` shows them, and the tests
check that both follow the manifests, never a copy in code.

Two kinds of rule, as a cluster serves them:

- `HTTPRoute` (Gateway API): `spec.hostnames` (none: any host), path matches `PathPrefix` or
  `Exact`, the first `backendRefs` entry, and a `URLRewrite` filter if there is one.
- `Ingress` (the course's legacy API): per `spec.rules[].host`, paths with `pathType`
  `Prefix` / `Exact` (`ImplementationSpecific` is treated as `Prefix`, as ingress-nginx does
  without regex), and the `nginx.ingress.kubernetes.io/rewrite-target` annotation.

Precedence, as in Gateway API and ingress-nginx: the most specific host wins (exact name, then
`*.wildcard`, then any host), then an exact path, then the longest prefix, then file order.
So `Host: api.local` takes the Ingress rules, any other host the HTTPRoute rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NETWORKING_STEP = "01-networking"
#: The path prefixes the course's gateway serves (its Ingress plus the design's additions);
#: the service registry may add more (`/api/inventory` is labkit's own).
COURSE_ROUTES = ("/api/users", "/api/orders", "/api/payments", "/api/commands", "/api/queries",
                 "/api/events")
#: The folder, in the lab's data directory, of the routes students write (notebook 01).
STUDENT_ROUTES_DIRNAME = "routes"
REWRITE_ANNOTATION = "nginx.ingress.kubernetes.io/rewrite-target"


@dataclass(frozen=True)
class Route:
    """One path rule of an HTTPRoute or Ingress, to one Service."""

    kind: str  # "HTTPRoute" | "Ingress"
    name: str  # the object's metadata.name
    hosts: tuple[str, ...]  # () = any host
    path: str
    exact: bool
    backend: str  # Service name
    port: int
    #: Ingress: the rewrite-target annotation. HTTPRoute: a URLRewrite ReplaceFullPath.
    rewrite_target: str | None = None
    #: HTTPRoute URLRewrite ReplacePrefixMatch: the matched prefix is replaced by this.
    replace_prefix: str | None = None

    @property
    def label(self) -> str:
        """`HTTPRoute ecommerce-routes /api/users` or `Ingress ecommerce-ingress api.local/api/users`."""
        host = ",".join(self.hosts)
        return f"{self.kind} {self.name} {host}{self.path}"

    def matches_path(self, path: str) -> bool:
        if self.exact:
            return path == self.path
        return path_prefix_matches(self.path, path)

    def host_rank(self, host: str) -> int | None:
        """3: exact host, 2: wildcard host, 1: any host (no hostnames); None: no match."""
        if not self.hosts:
            return 1
        best = None
        for h in self.hosts:
            if h == host:
                return 3
            if h.startswith("*.") and host.endswith(h[1:]) and host != h[2:]:
                best = 2
        return best

    def upstream_path(self, path: str, force_rewrite: str | None = None) -> str:
        """The path the backend receives (the query string is kept apart by the caller)."""
        target = self.rewrite_target
        if force_rewrite is not None and self.kind == "Ingress":
            target = force_rewrite
        if target is not None:
            # ingress-nginx without capture groups: the whole path becomes the target.
            return target
        if self.replace_prefix is not None and not self.exact:
            rest = path[len(self.path.rstrip("/")):]
            joined = self.replace_prefix.rstrip("/") + rest
            return joined if joined.startswith("/") else "/" + joined
        return path


def path_prefix_matches(prefix: str, path: str) -> bool:
    """Element-wise prefix, as `PathPrefix` and `pathType: Prefix` define it: `/api/users`
    matches `/api/users`, `/api/users/` and `/api/users/7`, never `/api/usersX`."""
    if prefix in ("", "/"):
        return True
    p = prefix.rstrip("/")
    return path == p or path.startswith(p + "/")


def normalise_host(host: str | None) -> str:
    """`API.local:8080` -> `api.local`; `[::1]:80` -> `::1`."""
    h = (host or "").strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _httproute(obj: Mapping[str, Any]) -> list[Route]:
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    hosts = tuple(str(h).lower() for h in spec.get("hostnames") or [])
    out = []
    for rule in spec.get("rules") or []:
        backends = rule.get("backendRefs") or []
        if not backends:
            continue
        backend = backends[0]
        rewrite_full = replace_prefix = None
        for f in rule.get("filters") or []:
            if f.get("type") == "URLRewrite":
                p = (f.get("urlRewrite") or {}).get("path") or {}
                if p.get("type") == "ReplaceFullPath":
                    rewrite_full = p.get("replaceFullPath")
                elif p.get("type") == "ReplacePrefixMatch":
                    replace_prefix = p.get("replacePrefixMatch")
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            path = match.get("path") or {"type": "PathPrefix", "value": "/"}
            kind = path.get("type", "PathPrefix")
            if kind not in ("PathPrefix", "Exact"):
                continue  # RegularExpression: not used by the lab's manifests
            out.append(Route("HTTPRoute", name, hosts, str(path.get("value", "/")),
                             kind == "Exact", str(backend["name"]), int(backend.get("port", 80)),
                             rewrite_full, replace_prefix))
    return out


def _ingress(obj: Mapping[str, Any]) -> list[Route]:
    meta = obj.get("metadata") or {}
    rewrite = (meta.get("annotations") or {}).get(REWRITE_ANNOTATION)
    out = []
    for rule in (obj.get("spec") or {}).get("rules") or []:
        hosts = (str(rule["host"]).lower(),) if rule.get("host") else ()
        for p in (rule.get("http") or {}).get("paths") or []:
            service = p["backend"]["service"]
            port = (service.get("port") or {}).get("number", 80)
            out.append(Route("Ingress", meta["name"], hosts, str(p.get("path", "/")),
                             p.get("pathType") == "Exact", str(service["name"]), int(port),
                             rewrite))
    return out


def routes_from(objects: Iterable[Mapping[str, Any]]) -> list[Route]:
    """Every HTTPRoute and Ingress path rule among `objects`, in file order."""
    out: list[Route] = []
    for obj in objects:
        if obj.get("kind") == "HTTPRoute":
            out += _httproute(obj)
        elif obj.get("kind") == "Ingress":
            out += _ingress(obj)
    return out


def load_routes(root: str | Path | None = None) -> list[Route]:
    """The rules of `manifests/01-networking` (or of the step folder under `root`)."""
    from labkit.runtime.manifests import load_step

    return routes_from(load_step(NETWORKING_STEP, root))


def match(routes: Iterable[Route], host: str | None, path: str) -> Route | None:
    """The rule a request for `host` + `path` takes, or None (the gateway answers 404)."""
    h = normalise_host(host)
    best: tuple[tuple[int, int, int, int], Route] | None = None
    for i, r in enumerate(routes):
        rank = r.host_rank(h)
        if rank is None or not r.matches_path(path):
            continue
        key = (rank, 1 if r.exact else 0, len(r.path.rstrip("/")), -i)
        if best is None or key > best[0]:
            best = (key, r)
    return best[1] if best else None


def student_routes_dir(data_dir: str | Path) -> Path:
    """Where the local gateway looks for students' HTTPRoute files."""
    return Path(data_dir) / STUDENT_ROUTES_DIRNAME


def load_student_routes(folder: str | Path) -> tuple[list[Route], list[str]]:
    """The HTTPRoute / Ingress rules of every `*.yaml` in `folder`, in file-name order, and one
    sentence per file that could not be read (that file is skipped, the others still count)."""
    import yaml

    routes: list[Route] = []
    errors: list[str] = []
    for f in sorted(Path(folder).glob("*.yaml")):
        try:
            objects = [o for o in yaml.safe_load_all(f.read_text(encoding="utf-8")) if o]
            found = routes_from(objects)
        except Exception as exc:  # a student's file: say which and why, keep the rest
            errors.append(f"{f.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        if not found:
            errors.append(f"{f.name}: no HTTPRoute or Ingress path rule in it")
        routes += found
    return routes, errors
