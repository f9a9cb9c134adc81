"""Checkpoints: the course's "✅ 실습 체크포인트", as checks that run against the live lab.

Each checklist line of the course is a function registered under its section; it inspects the
running system (HTTP calls, the event log, the manifests) and returns a `CheckResult` whose
`evidence` says what it saw. The notebooks end with

    results = checks.run(lab, "CQRS")
    checks.table(results)          # what was checked, and the evidence
    checks.assert_ok(results)      # raises (Korean + English) if anything failed

A check that cannot be done in this mode (e.g. `nslookup` inside the cluster, in local mode)
returns `ok=None` with the reason: it is reported, never counted as passed or failed.

Adding a check (e.g. the Saga section):

    @checkpoint("Saga", "Saga Orchestrator Job 정상 실행")
    def saga_job_runs(lab):
        ...
        return ok, "what was seen"          # or a CheckResult
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ecommerce.domain import orders as dom_orders
from ecommerce.domain import payments as dom_payments
from ecommerce.domain import saga as sg
from ecommerce.domain import stock as dom_stock
from ecommerce.waiting import WaitTimeout, wait_until

if TYPE_CHECKING:
    import pandas as pd

    from labkit.lab import Lab

#: The course's checklist groups ("✅ 실습 체크포인트"), in its order.
COURSE_SECTIONS = ("Kubernetes Native", "Saga", "CQRS", "Event Sourcing")
#: Every section: the course's, plus the workbook's own first (setup) and last (cleanup) steps.
SECTIONS = ("Setup", *COURSE_SECTIONS, "Cleanup")
_ALIASES = {"k8s": "Kubernetes Native", "kubernetes": "Kubernetes Native",
            "networking": "Kubernetes Native", "es": "Event Sourcing",
            "eventsourcing": "Event Sourcing"}


@dataclass(frozen=True)
class CheckResult:
    item: str
    #: True passed, False failed, None not checkable in this mode (evidence says why).
    ok: bool | None
    evidence: str
    section: str = ""

    @property
    def status(self) -> str:
        return {True: "✅ ok", False: "❌ FAIL", None: "➖ n/a"}[self.ok]


class CheckpointError(AssertionError):
    """Raised by `assert_ok` when a checkpoint failed; the message is Korean and English."""


CheckFn = Callable[["Lab"], "CheckResult | tuple[bool | None, str]"]


@dataclass(frozen=True)
class Checkpoint:
    section: str
    item: str
    fn: CheckFn


#: section -> its checkpoints, in registration order.
REGISTRY: dict[str, list[Checkpoint]] = {s: [] for s in SECTIONS}


def section_name(section: str) -> str:
    """`"cqrs"`, `"CQRS"`, `"event-sourcing"`, `"k8s"` -> the canonical section name."""
    key = re.sub(r"[^a-z0-9]", "", section.lower())
    for s in SECTIONS:
        if re.sub(r"[^a-z0-9]", "", s.lower()) == key:
            return s
    if key in _ALIASES:
        return _ALIASES[key]
    raise KeyError(f"unknown checkpoint section {section!r}; use one of: {', '.join(SECTIONS)}")


def checkpoint(section: str, item: str) -> Callable[[CheckFn], CheckFn]:
    """Register `fn(lab)` as the check of checklist line `item` in `section`."""
    name = section_name(section)

    def decorator(fn: CheckFn) -> CheckFn:
        REGISTRY[name] = [c for c in REGISTRY[name] if c.item != item]
        REGISTRY[name].append(Checkpoint(name, item, fn))
        return fn

    return decorator


def items(section: str) -> list[str]:
    """The checklist lines of a section (without running anything)."""
    return [c.item for c in REGISTRY[section_name(section)]]


def run_one(lab: Lab, cp: Checkpoint) -> CheckResult:
    """Run one checkpoint; an exception is a failed check whose evidence is the error."""
    try:
        out = cp.fn(lab)
    except Exception as exc:  # the evidence of a failure is the error itself
        return CheckResult(cp.item, False, f"{type(exc).__name__}: {exc}", cp.section)
    if isinstance(out, CheckResult):
        return CheckResult(out.item or cp.item, out.ok, out.evidence, cp.section)
    ok, evidence = out
    return CheckResult(cp.item, ok, evidence, cp.section)


def run(lab: Lab, section: str) -> list[CheckResult]:
    """Run every checkpoint of `section` against the running lab, in the course's order."""
    return [run_one(lab, cp) for cp in REGISTRY[section_name(section)]]


def run_all(lab: Lab) -> list[CheckResult]:
    """Every course section (not Setup / Cleanup), in the course's order."""
    return [r for s in COURSE_SECTIONS for r in run(lab, s)]


def table(results: Iterable[CheckResult]) -> pd.DataFrame:
    """Results as a DataFrame: section, item, status, evidence."""
    import pandas as pd

    rows = [{"section": r.section, "item": r.item, "status": r.status, "evidence": r.evidence}
            for r in results]
    return pd.DataFrame(rows, columns=["section", "item", "status", "evidence"])


def report(results: Iterable[CheckResult]) -> Any:
    """`table(results)` for a notebook: every evidence in full, wrapped in its cell (never cut
    with "…"), narrow enough for JupyterLab at 1024x768."""
    from labkit.workbook.tables import show

    return show(table(results), wrap=["item", "evidence"], key=[])


def summary(results: Iterable[CheckResult]) -> pd.DataFrame:
    """Results counted by section and status (✅ ok / ❌ FAIL / ➖ n/a)."""
    df = table(results)
    return df.groupby("section", sort=False)["status"].value_counts().unstack(fill_value=0)


def assert_ok(results: Sequence[CheckResult]) -> None:
    """Raise `CheckpointError` if any check failed (or none ran)."""
    results = list(results)
    if not results:
        raise CheckpointError("체크포인트가 하나도 실행되지 않았습니다. / No checkpoint ran: "
                              "is the section name right (see labkit.workbook.checks.SECTIONS)?")
    failed = [r for r in results if r.ok is False]
    if failed:
        lines = "\n".join(f"  - [{r.section}] {r.item}: {r.evidence}" for r in failed)
        raise CheckpointError(
            f"체크포인트 {len(failed)}개가 실패했습니다. 아래 근거를 보고 고친 뒤 다시 실행하세요.\n"
            f"{len(failed)} of {len(results)} checkpoint(s) failed; fix what the evidence says "
            f"and run the cell again.\n{lines}"
        )


# ---- helpers ----------------------------------------------------------------------------------
#: One harmless request per route: (method, path, json body, expected status).
#: The command probe sends an empty body: command-service answers 422 and writes nothing.
ROUTE_PROBES: dict[str, tuple[str, str, Any, int]] = {
    "/api/users": ("GET", "/api/users", None, 200),
    "/api/orders": ("GET", "/api/orders", None, 200),
    "/api/inventory": ("GET", "/api/inventory", None, 200),
    "/api/payments": ("GET", "/api/payments/accounts", None, 200),
    "/api/commands": ("POST", "/api/commands/create-user", {}, 422),
    "/api/queries": ("GET", "/api/queries/users?limit=1", None, 200),
    "/api/events": ("GET", "/api/events?limit=1", None, 200),
}


def _http_services(lab: Lab) -> list[str]:
    from ecommerce.services.registry import SERVICES

    return [name for name, spec in SERVICES.items() if spec.http]


def _cluster_dns(service: str, lab: Lab) -> str:
    return f"http://{service}.{lab.settings.namespace}.svc.cluster.local"


def _get(lab: Lab, service: str, path: str) -> Any:
    response = lab.http(service).get(path)
    response.raise_for_status()
    return response.json()


def probe_routes(lab: Lab, via_gateway: bool = True) -> list[dict[str, Any]]:
    """Call every route once through the gateway, as the course's curl lines do.

    Local mode: twice, without a Host header (the HTTPRoute rule) and with `Host: api.local`
    (the course's Ingress rule); the local gateway names the rule and the backend it chose
    (`X-Labkit-Route`, `X-Labkit-Backend`). Cluster mode: through the Gateway with
    `Host: api.local` (its answer does not name the backend). `via_gateway=False`: each
    service's own URL, which is asked who it is (`/healthz`).

    Each row: path, service, host, request, url, expected, status, route, answered_by, ok.
    """
    import httpx

    from labkit.lab.topology import routes

    hosts: list[str | None] = [None, "api.local"] if lab.mode == "local" else ["api.local"]
    if not via_gateway:
        hosts = [None]
    rows = []
    for host in hosts:
        for r in routes():
            method, path, body, expected = ROUTE_PROBES.get(r["path"], ("GET", r["path"], None, 200))
            client = lab.http("gateway" if via_gateway else r["service"])
            headers = {"Host": host} if host else {}
            row = {"path": r["path"], "service": r["service"], "host": host or "(none)",
                   "request": f"{method} {path}", "url": str(client.base_url).rstrip("/") + path,
                   "expected": expected, "route": None, "answered_by": None}
            try:
                resp = client.request(method, path, json=body, headers=headers)
                row["status"] = resp.status_code
                row["route"] = resp.headers.get("x-labkit-route")
                row["answered_by"] = resp.headers.get("x-labkit-backend")
            except httpx.HTTPError as exc:
                row["status"] = f"{type(exc).__name__}"
            if not via_gateway:  # a service URL: ask it who it is
                try:
                    row["answered_by"] = client.get("/healthz").json().get("service")
                except (httpx.HTTPError, ValueError):
                    row["answered_by"] = None
            if lab.mode == "cluster" and via_gateway:  # the Gateway does not say who answered
                row["answered_by"] = "(gateway)"
                row["ok"] = row["status"] == expected
            else:
                row["ok"] = row["status"] == expected and row["answered_by"] == r["service"]
            rows.append(row)
    return rows


def load_tester(lab: Lab, *argv: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run a command in the course's load-tester pod (`kubectl exec -n testing ...`).

    Cluster mode only: uses the cluster runtime's exec if it has one, else the kubectl binary.
    Returns (exit code, output).
    """
    from labkit.lab import LabError

    if lab.mode != "cluster":
        raise LabError("cluster only: the load-tester pod exists only in cluster mode "
                       "(LABKIT_MODE=cluster)")
    exec_fn = getattr(lab.runtime, "exec", None)
    if exec_fn is not None:
        return exec_fn("testing", "deploy/load-tester", list(argv))
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise LabError("needs `kubectl` on PATH (the cluster runtime has no exec): "
                       "kubectl exec -n testing deploy/load-tester -- " + " ".join(argv))
    done = subprocess.run([kubectl, "exec", "-n", "testing", "deploy/load-tester", "--", *argv],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).strip()


def _peer(peer: dict[str, Any]) -> str:
    pods = (peer.get("podSelector") or {}).get("matchLabels") or {}
    nss = peer.get("namespaceSelector") or {}
    if "ipBlock" in peer:
        return f"ip {peer['ipBlock'].get('cidr')}"
    pod = pods.get("app.kubernetes.io/name") or ",".join(f"{k}={v}" for k, v in pods.items())
    if not pod and "podSelector" in peer:
        pod = "any pod"
    if not nss:
        return pod
    named = (nss.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    listed = [v for e in nss.get("matchExpressions") or [] for v in e.get("values") or []]
    where = named or ("|".join(listed) if listed else "any namespace")
    return f"{where}/{pod or 'any pod'}"


def network_policy_rules(step: str = "01-networking") -> pd.DataFrame:
    """The NetworkPolicies of the manifests as rows: policy, pods, direction, peers, ports.

    A policy with no rule for a direction it lists denies that direction (default deny).
    """
    import pandas as pd

    from labkit.runtime.manifests import load_step

    rows = []
    for obj in load_step(step):
        if obj.get("kind") != "NetworkPolicy":
            continue
        spec = obj.get("spec") or {}
        pods = (spec.get("podSelector") or {}).get("matchLabels") or {}
        selected = pods.get("app.kubernetes.io/name") or (
            ",".join(f"{k}={v}" for k, v in pods.items()) if pods else "every pod")
        for direction in spec.get("policyTypes") or []:
            rules = spec.get("ingress" if direction == "Ingress" else "egress") or []
            if not rules:
                rows.append({"policy": obj["metadata"]["name"], "pods": selected,
                             "direction": direction, "peers": "(none: denied)", "ports": ""})
            for rule in rules:
                peers = rule.get("from" if direction == "Ingress" else "to") or []
                ports = ", ".join(f"{p.get('protocol', 'TCP')}/{p.get('port')}"
                                  for p in rule.get("ports") or []) or "all"
                rows.append({"policy": obj["metadata"]["name"], "pods": selected,
                             "direction": direction,
                             "peers": ", ".join(_peer(p) for p in peers) or "anywhere",
                             "ports": ports})
    return pd.DataFrame(rows, columns=["policy", "pods", "direction", "peers", "ports"])


def _ensure_user(lab: Lab) -> str:
    """Some user id that exists in the log and the read model (creates one if needed)."""
    users = lab.query("users", limit=1)["users"]
    if users:
        return users[0]["id"]
    accepted = lab.command("create-user", name="Checkpoint Probe",
                           email=f"probe.{uuid.uuid4().hex[:8]}@example.com")
    lab.wait_for_projection(accepted["position"])
    return accepted["user_id"]


def _head(lab: Lab) -> int:
    return int(_get(lab, "event-store-api", "/api/events?limit=1")["last_position"])


def _manifest_replicas(name: str) -> int:
    from labkit.runtime.manifests import load_all

    for objs in load_all().values():
        for o in objs:
            if o.get("kind") == "Deployment" and o["metadata"]["name"] == name:
                return int((o.get("spec") or {}).get("replicas", 1))
    raise KeyError(f"no Deployment {name!r} in manifests/")


# ---- Setup (00-setup) ------------------------------------------------------------------------------
SETUP = "Setup"
#: Healthy states: local runtime `status`, cluster runtime `state`.
UP_STATES = {"ready", "running", "suspended"}
#: A workload of a step `lab.up(step=...)` has not reached yet.
NOT_STARTED = "not started"


def _status_rows(lab: Lab) -> list[dict[str, Any]]:
    rows = lab.status().to_dict("records")
    for r in rows:
        r["_name"] = r.get("service") or r.get("name")
        r["_state"] = str(r.get("status") or r.get("state") or "")
    return rows


@checkpoint(SETUP, "사전 점검 통과 (lab.doctor())")
def doctor_ok(lab: Lab) -> tuple[bool, str]:
    df = lab.doctor()
    bad = df[df["ok"].eq(False)]
    if len(bad):
        return False, "; ".join(f"{r.check}: {r.detail}" for r in bad.itertuples())
    return True, f"{len(df)} checks passed: " + ", ".join(df["check"])


@checkpoint(SETUP, "모든 서비스 준비 완료 (lab.status())")
def all_up(lab: Lab) -> tuple[bool, str]:
    rows = _status_rows(lab)
    databases = getattr(lab.runtime, "database_rows", None) if lab.mode == "local" else None
    if databases:  # 00-base: files or servers, no process; opened here to be sure
        from ecommerce.store.factory import open_event_store, open_read_store

        try:
            open_event_store(lab.settings).close()
            open_read_store(lab.settings).close()
            state = "ready"
        except Exception as exc:  # shown as the state: what is wrong with the databases
            state = f"unreachable ({type(exc).__name__}: {exc})"
        rows += [{**r, "_name": r.get("service"), "_state": state} for r in databases()]
    # `lab.up(step=...)` starts the course's steps one notebook at a time: a later step's
    # workloads are "not started" until their notebook deploys them, which is not a failure.
    later = sorted({str(r.get("step") or "?") for r in rows if r["_state"] == NOT_STARTED})
    rows = [r for r in rows if r["_state"] != NOT_STARTED]
    down = [f"{r['_name']}={r['_state']}" for r in rows if r["_state"] not in UP_STATES]
    if down or not rows:
        return False, f"not ready: {', '.join(down) or 'nothing is running'}; run lab.up()"
    waiting = f"; not deployed yet (their notebooks start them): {', '.join(later)}" if later else ""
    return True, (f"{len(rows)} workloads: " + ", ".join(f"{r['_name']}={r['_state']}" for r in rows)
                  + waiting)


@checkpoint(SETUP, "매니페스트의 컨테이너 명령 그대로 실행")
def runs_manifest_commands(lab: Lab) -> tuple[bool | None, str]:
    if lab.mode == "cluster":
        return None, "cluster mode: the manifests are applied as they are (see lab.status())"
    import psutil

    from labkit.runtime.local import launch_specs

    specs = launch_specs()
    seen: list[str] = []
    wrong: list[str] = []
    for r in _status_rows(lab):
        name, pid = r["_name"], r.get("pid")
        if name not in specs or pid is None or pid != pid:  # NaN: not running
            continue
        cmdline = psutil.Process(int(pid)).cmdline()
        want = specs[name].command[1:]  # without the interpreter path
        (seen if cmdline[1:] == want else wrong).append(f"{name}: {' '.join(cmdline[1:])}")
    if not seen and not wrong:  # e.g. after lab.up(step="00-base"): databases, no process
        return None, ("no service process started yet (the steps up to now have none); each "
                      "notebook's lab.up(step=...) starts its step's processes")
    if wrong:
        return False, "processes differ from the manifests' commands: " + "; ".join(wrong)
    return True, f"{len(seen)} processes run their container's command: " + "; ".join(seen)


# ---- Kubernetes Native ----------------------------------------------------------------------------
K8S = "Kubernetes Native"


@checkpoint(K8S, "라우팅 규칙 선언: HTTPRoute와 레거시 Ingress가 같은 경로표 (rewrite-target 없음)")
def routes_declared(lab: Lab) -> tuple[bool, str]:
    from labkit.lab.topology import manifest_routes, routes
    from labkit.runtime.manifests import load_step

    table_ = {r["path"]: r["service"] for r in routes()}
    declared = manifest_routes()
    problems = []
    for kind in ("httproute", "ingress"):
        if declared[kind] != table_:
            diff = set(table_.items()) ^ set(declared[kind].items())
            problems.append(f"{kind} differs from the route table: {sorted(diff)}")
    for obj in load_step("01-networking"):
        if obj.get("kind") == "Ingress":
            notes = (obj["metadata"].get("annotations") or {})
            bad = [k for k in notes if k.endswith("rewrite-target")]
            if bad:
                problems.append(f"Ingress {obj['metadata']['name']} rewrites paths ({bad[0]}): "
                                "every route would reach the service as `/`")
    if problems:
        return False, "; ".join(problems)
    return True, (f"{len(table_)} routes, the same in HTTPRoute and Ingress "
                  f"(manifests/01-networking): " + ", ".join(f"{p}→{s}" for p, s in table_.items()))


@checkpoint(K8S, "게이트웨이 설치 및 동작 (과정의 Nginx Ingress Controller → Gateway API)")
def gateway_running(lab: Lab) -> tuple[bool | None, str]:
    url = lab.url("gateway")
    if lab.mode == "cluster":
        return True, f"Gateway labkit-gateway has an address: {url} (Host: api.local)"
    from labkit.runtime.routes import load_routes

    ready = lab.http("gateway").get("/readyz")
    rules = load_routes()
    kinds = sorted({f"{r.kind} {r.name}" for r in rules})
    ok = ready.status_code == 200 and ready.json().get("routes") == len(rules)
    return ok, (f"local gateway (labkit's stand-in for the cluster's Gateway / ingress "
                f"controller) at {url}: /readyz -> {ready.status_code}, serving "
                f"{ready.json().get('routes')} rules read from manifests/01-networking "
                f"({', '.join(kinds)})")


@checkpoint(K8S, "기본 라우팅 동작 확인: 모든 경로가 해당 서비스에서 응답")
def routing_works(lab: Lab) -> tuple[bool, str]:
    rows = probe_routes(lab)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        return False, ("not answered as expected: " + ", ".join(
            f"{r['request']} (Host {r['host']}) → {r['status']} (expected {r['expected']} from "
            f"{r['service']}, answered by {r['answered_by']})" for r in bad))
    if lab.mode == "cluster":
        seen = ", ".join(f"{r['request']}→{r['status']}" for r in rows)
        return True, f"{len(rows)} routes answered through the Gateway (Host: api.local): {seen}"
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_host.setdefault(r["host"], []).append(r)
    parts = [f"Host {host}: " + ", ".join(f"{r['request']}→{r['status']} by {r['answered_by']} "
                                          f"({r['route'].split()[0]})" for r in rs)
             for host, rs in by_host.items()]
    return True, (f"{len(rows)} requests through the local gateway {lab.url('gateway')}, each "
                  "answered by the service its rule names: " + "; ".join(parts))


@checkpoint(K8S, "서비스 간 ClusterIP 통신 확인: user-service → command-service")
def service_to_service(lab: Lab) -> tuple[bool | None, str]:
    email = f"clusterip.{uuid.uuid4().hex[:8]}@example.com"
    resp = lab.http("user-service").post("/api/users", json={"name": "ClusterIP Probe",
                                                             "email": email})
    if resp.status_code >= 400:
        return False, f"user-service POST /api/users -> {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    user_id = body.get("user_id") or body.get("id")
    events = lab.stream(f"user-{user_id}")
    written_by = events[0]["metadata"].get("command") if events else None
    if lab.mode == "local":
        target = lab.url("command-service")
    else:  # what the user-service pods were given by their manifest
        from ecommerce.config import service_url_var
        from labkit.runtime.manifests import container_specs

        env = container_specs()["user-service"].literal_env
        target = env.get(service_url_var("command-service"), _cluster_dns("command-service", lab))
    ok = bool(events) and written_by == "create-user"
    seen = (f"user-service forwarded POST /api/users to command-service at {target}: "
            f"{resp.status_code}, stream user-{user_id} v{len(events)} written by "
            f"command-service (metadata.command={written_by!r})")
    if lab.mode == "local" and ok:  # the call works, but no ClusterIP carried it
        return None, (f"cluster only: local mode has no ClusterIP (no kube-proxy, no virtual "
                      f"IP); the peer is a process on 127.0.0.1. What was checked instead: {seen}")
    return ok, seen


@checkpoint(K8S, "DNS 기반 서비스 디스커버리 동작")
def dns_discovery(lab: Lab) -> tuple[bool | None, str]:
    from ecommerce.config import service_url_var

    if lab.mode == "cluster":
        name = f"command-service.{lab.settings.namespace}.svc.cluster.local"
        try:
            code, out = load_tester(lab, "nslookup", name)
        except Exception as exc:
            return None, f"could not exec into the load-tester: {exc}"
        address = re.findall(r"Address:\s*([0-9.]+)", out)
        ok = code == 0 and bool(address)
        return ok, (f"kubectl exec -n testing deploy/load-tester -- nslookup {name}: "
                    + (f"{name} -> {address[-1]}" if ok else out[-300:]))
    found = []
    for name in _http_services(lab):
        url = lab.url(name)
        host = urlsplit(url).hostname or ""
        addr = socket.getaddrinfo(host, None)[0][4][0]
        who = _get(lab, name, "/healthz").get("service")
        if who != name:
            return False, f"{url} ({service_url_var(name)}) answered as {who!r}, not {name}"
        found.append(f"{name} → {url} ({addr})")
    return None, ("cluster only: local mode has no cluster DNS (nslookup in the load-tester pod "
                  "needs LABKIT_MODE=cluster). What was checked instead: peers find each other "
                  "through LABKIT_<SERVICE>_URL variables (the cluster sets them to DNS names "
                  f"such as {_cluster_dns('command-service', lab)}); every URL answered /healthz "
                  "as its service: " + "; ".join(found))


# ---- Saga -------------------------------------------------------------------------------------------
SAGA = "Saga"
#: A SKU with plenty of stock (10 000 units): checks and notebooks that must succeed buy this, so
#: running them again and again never runs the warehouse dry.
PLENTY_SKU = "MOUSE-WL"


def effects() -> dict[str, tuple[str, str]]:
    """Participant events -> (saga step, kind) whose effect they record: from the saga's step
    definitions (`ecommerce.domain.saga.StepDef.effects`), plugin steps included."""
    return dict(sg.effects_by_type())


#: Who writes a stream, by its prefix (each service appends only to its own streams).
WRITERS = {sg.STREAM_PREFIX: "saga-orchestrator", dom_orders.STREAM_PREFIX: "order-service",
           dom_stock.STOCK_PREFIX: "inventory-service",
           dom_stock.RESERVATION_PREFIX: "inventory-service",
           dom_payments.STREAM_PREFIX: "payment-service", "user-": "command-service"}
_VIEW_META = ("source", "last_updated", "checkpoint", "log_position")


def _writer(stream_id: str) -> str:
    return next((w for p, w in WRITERS.items() if stream_id.startswith(p)), "?")


def _get_status(lab: Lab, service: str, path: str) -> tuple[int, dict[str, Any]]:
    response = lab.http(service).get(path)
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    return response.status_code, body if isinstance(body, dict) else {"body": body}


def participant_records(lab: Lab, order_id: str, user_id: str) -> list[dict[str, Any]]:
    """What each saga participant itself says about one order, from its own API.

    One row per participant: service, request, HTTP status, the record's status, and details
    (amount, lines). A refused or never-reached step shows its 404 / reason.
    """
    asks = [("user-service", f"/api/users/{user_id}"),
            ("order-service", f"/api/orders/{order_id}"),
            ("inventory-service", f"/api/inventory/reservations/{order_id}"),
            ("payment-service", f"/api/payments/{order_id}")]
    rows = []
    for service, path in asks:
        code, body = _get_status(lab, service, path)
        detail: dict[str, Any] = {k: body[k] for k in ("amount", "total", "account_id") if k in body}
        if "lines" in body:
            detail["lines"] = ", ".join(f"{ln['sku']}x{ln['quantity']}" for ln in body["lines"])
        rows.append({"service": service, "request": f"GET {path}", "http": code,
                     "status": body.get("status") or body.get("reason") or "",
                     "detail": detail or body.get("detail", "")})
    return rows


def saga_log(lab: Lab, saga_id: str) -> pd.DataFrame:
    """The global log around one saga: its own stream interleaved with the participants' events
    about its order, in log (position) order.

    Columns: position, writer (who appended it), stream_id, event_type, step, kind
    (action | compensation | saga), role (`decision`: the orchestrator's record, `effect`: what
    a participant did). Shows that each decision is recorded *before* its effect.
    """
    import pandas as pd

    own = lab.stream(f"saga-{saga_id}")
    if not own:
        raise KeyError(f"no saga {saga_id!r}")
    order_id = own[0]["data"]["order_id"]
    first, last = own[0]["position"], own[-1]["position"]
    log = lab.events(after=first - 1, limit=last - first + 1)
    rows = []
    by_effect = effects()
    for e in log.to_dict("records"):
        data = e["data"] if isinstance(e["data"], dict) else {}
        mine = e["stream_id"] == f"saga-{saga_id}"
        if not mine and data.get("order_id") != order_id:
            continue
        if mine:
            kind = ("compensation" if e["event_type"] in (
                        sg.COMPENSATION_STARTED, sg.COMPENSATION_RETRIED,
                        sg.COMPENSATION_SUCCEEDED) or
                    (e["event_type"] == sg.SAGA_FAILED and data.get("step")) else
                    "action" if data.get("step") else "saga")
            step = data.get("step") or ""
        else:
            # By type and writer: OrderWithdrawn (domain.fate) goes with the first compensation,
            # release or refund, of the writer's step.
            step, kind = (sg.effect_of(e["event_type"], _writer(e["stream_id"]))
                          or by_effect.get(e["event_type"], ("", "")))
        rows.append({"position": e["position"], "writer": _writer(e["stream_id"]),
                     "stream_id": e["stream_id"], "event_type": e["event_type"], "step": step,
                     "kind": kind, "role": "decision" if mine else "effect"})
    return pd.DataFrame(rows, columns=["position", "writer", "stream_id", "event_type", "step",
                                       "kind", "role"])


def decisions_first(log: pd.DataFrame) -> list[str]:
    """Effects in `saga_log(...)` that no earlier recorded decision started (empty: all good)."""
    started: set[tuple[str, str]] = set()
    problems = []
    for r in log.sort_values("position").itertuples():
        if r.role == "decision" and r.event_type in (sg.STEP_STARTED, sg.COMPENSATION_STARTED):
            started.add((r.step, r.kind))
        elif r.role == "effect" and (r.step, r.kind) not in started:
            problems.append(f"{r.event_type} at position {r.position} ({r.writer}) came before "
                            f"the saga recorded that it starts {r.kind} {r.step}")
    return problems


def saga_outcomes(lab: Lab, sagas: dict[str, str]) -> pd.DataFrame:
    """{scenario: saga id} -> how each ended: user, failed step, reason, the steps that had
    succeeded, and the compensations in the order they were recorded."""
    import pandas as pd

    rows = []
    for name, sid in sagas.items():
        v = lab.saga.status(sid)
        rows.append({"scenario": name, "saga": sid, "user": v["user_id"], "status": v["status"],
                     "failed at": v["failed_step"], "reason": v["failure"],
                     "succeeded before": ", ".join(a for a in v["actions"]
                                                   if v[a]["status"] == "succeeded"),
                     "compensated (recorded order)": " → ".join(compensation_order(lab, sid))})
    return pd.DataFrame(rows)


def compensation_order(lab: Lab, saga_id: str) -> list[str]:
    """The compensations of a saga in the order they were recorded as done (from its stream)."""
    return [e["data"].get("compensation") or e["data"]["step"]
            for e in lab.stream(f"saga-{saga_id}") if e["event_type"] == sg.COMPENSATION_SUCCEEDED]


def _balance(lab: Lab, account: str) -> int:
    return int(_get(lab, "payment-service", f"/api/payments/accounts/{account}")["balance"])


def _stock(lab: Lab, sku: str) -> dict[str, int]:
    item = _get(lab, "inventory-service", f"/api/inventory/{sku}")
    return {k: int(item[k]) for k in ("available", "reserved", "sold")}


def _orchestrator_state(lab: Lab) -> str:
    for r in _status_rows(lab):
        if r["_name"] == "saga-orchestrator":
            return r["_state"]
    return "missing"


def _job_summary(output: str) -> dict[str, Any]:
    """The JSON line `python -m ecommerce.saga run --pending` prints when it is done."""
    for line in reversed(str(output).splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "resumed" in entry:
            return entry
    return {}


def _invariant_group(violation: str) -> str:
    if violation.startswith(("money", "stock", "saga")):
        return violation.split(":")[0].split()[0]
    if violation.startswith("payment:") and violation.endswith("times"):
        return "double"
    return "orders"


def saga_invariants(lab: Lab, timeout: float = 10.0) -> pd.DataFrame:
    """The saga invariants (`labkit.ops.invariants`) over the whole running system, one row each:
    invariant, ok, evidence (the numbers it compared, or the violations).

    Waits up to `timeout` seconds for unfinished sagas to end (their orders are skipped).
    """
    import pandas as pd

    from ecommerce.domain.payments import CHARGED, MERCHANT
    from labkit.ops import invariants

    store = lab.saga.store

    def observe() -> tuple[invariants.SystemState, invariants.InvariantReport]:
        state = invariants.snapshot(lab.http, store)
        return state, invariants.check_state(state)

    try:  # a stuck saga will not end by waiting: only the others are worth waiting for
        state, report = wait_until(observe, until=lambda o: len(o[1].unfinished) == len(o[1].stuck),
                                   timeout=timeout, interval=0.05, what="the sagas to end")
    except WaitTimeout as late:
        state, report = late.last  # report what is there, unfinished sagas and all
    bad: dict[str, list[str]] = {}
    for v in report.violations:
        bad.setdefault(_invariant_group(v), []).append(v)
    accounts = state.accounts
    total = sum(a["balance"] for a in accounts)
    opened = sum(a["initial_balance"] + a.get("funded", 0) for a in accounts)
    charged = [p for p in state.payments.values() if p["status"] == CHARGED]
    merchant = next((a for a in accounts if a["account_id"] == MERCHANT), None)
    received = merchant["balance"] - merchant["initial_balance"] if merchant else 0
    held = sum(i["reserved"] + i["sold"] for i in state.stock.values())
    statuses = [o["status"] for o in state.orders.values()]
    most = max(state.charges_in_log.values(), default=0)
    evidence = {
        "money": (f"{len(accounts)} accounts hold {total:,} cents in total, opened and funded "
                  f"with {opened:,}; the merchant received {received:,} = the {len(charged)} charged "
                  f"payments ({sum(p['amount'] for p in charged):,})"),
        "stock": (f"{len(state.stock)} SKUs, each available + reserved + sold == initial; "
                  f"{held} units reserved or sold = the units of CONFIRMED orders"),
        "orders": (f"{statuses.count('CONFIRMED')} CONFIRMED orders, each charged (right account "
                   f"and amount) and reserved (its lines); {statuses.count('CANCELLED')} "
                   "CANCELLED orders keep no money and no stock"),
        "double": (f"{sum(state.charges_in_log.values())} PaymentCharged events in the log for "
                   f"{len(state.charges_in_log)} orders: at most {most} per order"),
        "saga": (f"sagas by outcome {report.counts}: completed ⇔ order CONFIRMED, compensated ⇒ "
                 "order CANCELLED (or never created)"),
    }
    names = {"money": "돈은 보존된다 (money is conserved)",
             "stock": "재고는 보존된다 (stock is conserved)",
             "orders": "CONFIRMED ⇔ 결제됨 + 재고 예약됨 (CONFIRMED iff charged and reserved)",
             "double": "이중 결제 없음 (no order charged twice)",
             "saga": "사가 결과 = 주문 상태 (saga outcome matches its order)"}
    rows = [{"invariant": names[k], "ok": not bad.get(k),
             "evidence": "; ".join(bad[k]) if bad.get(k) else evidence[k]} for k in names]
    if report.stuck:
        rows.append({"invariant": "멈춘 사가 없음 (no saga stuck)", "ok": False,
                     "evidence": f"{len(report.stuck)} saga(s) the orchestrator gave up on "
                                 f"(`labkit saga retry ID` after fixing the cause): "
                                 + "; ".join(report.stuck[:5])})
    running = [sid for sid in report.unfinished
               if not any(line.startswith(f"{sid}:") for line in report.stuck)]
    if running:
        rows.append({"invariant": "모든 사가가 끝남 (every saga ended)", "ok": False,
                     "evidence": f"still running after {timeout}s: {running[:5]}"})
    return pd.DataFrame(rows, columns=["invariant", "ok", "evidence"])


INVARIANTS_ITEM = "시스템 불변식: 돈·재고 보존, 확정 ⇔ 결제+예약, 이중 결제 없음"


def check_invariants(lab: Lab) -> CheckResult:
    """The saga invariants over the whole system (`saga_invariants`), as one checkpoint result:
    one evidence line per invariant. 02-saga's invariant cell and 05's checkpoint both run
    this, so they cannot disagree about the same state."""
    table_ = saga_invariants(lab)
    lines = [f"{'✅' if r.ok else '❌'} {r.invariant}: {r.evidence}" for r in table_.itertuples()]
    return CheckResult(INVARIANTS_ITEM, bool(table_["ok"].all()), "\n".join(lines), SAGA)


@checkpoint(SAGA, "Saga Orchestrator Job 정상 실행: 밀린 사가를 끝내고 exit 0")
def saga_job_runs(lab: Lab) -> tuple[bool, str]:
    from labkit.lab.scenarios import ALICE, ensure_customer

    ensure_customer(lab, ALICE)
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    if lab.mode == "cluster":
        # The follow Deployment keeps running here, so it may finish these first; the Job must
        # still exit 0 and leave nothing unfinished.
        ids = [lab.saga.place_order(ALICE, [(PLENTY_SKU, 1)]),
               lab.saga.place_order(ghost, [(PLENTY_SKU, 1)])]
        job = lab.run_job("saga-orchestrator")
        views = [lab.saga.wait(sid, timeout=30) for sid in ids]
        ok = [v["status"] for v in views] == ["completed", "compensated"]
        return ok, (f"Job {job} (python -m ecommerce.saga run --pending) completed; the two sagas "
                    f"placed before it ended {[v['status'] for v in views]}")
    follower = _orchestrator_state(lab)
    if follower not in ("stopped", "not started", "missing"):
        lab.kill("saga-orchestrator")  # the always-on orchestrator: the Job must do the work
    try:
        ids = [lab.saga.place_order(ALICE, [(PLENTY_SKU, 1)]),
               lab.saga.place_order(ghost, [(PLENTY_SKU, 1)])]
        waiting = [lab.saga.status(sid) for sid in ids]
        idle = all(v["status"] == "running" and all(v[a]["status"] == "pending"
                                                    for a in v["actions"]) for v in waiting)
        started = time.perf_counter()
        output = lab.run_job("saga-orchestrator")  # raises on a non-zero exit
        seconds = time.perf_counter() - started
        views = [lab.saga.status(sid) for sid in ids]
    finally:
        lab.up(progress=False)
    summary = _job_summary(output)
    statuses = [v["status"] for v in views]
    ok = (idle and statuses == ["completed", "compensated"] and summary.get("unfinished") == 0
          and summary.get("resumed", 0) >= len(ids))
    return ok, (f"stopped the follow orchestrator (was {follower}); 2 sagas placed, "
                f"{'both waiting with no step started' if idle else 'NOT idle: ' + str(waiting)}; "
                f"`python -m ecommerce.saga run --pending` exited 0 after {seconds:.2f}s: "
                f"{json.dumps(summary)}; the sagas ended {statuses} (alice's order, then a user "
                f"nobody registered); the follow orchestrator was started again")


@checkpoint(SAGA, "각 서비스별 트랜잭션 실행 확인: 주문 확정, 결제, 재고 예약")
def saga_participants_commit(lab: Lab) -> tuple[bool, str]:
    from ecommerce.domain.payments import MERCHANT
    from labkit.lab.scenarios import ALICE, ensure_customer

    ensure_customer(lab, ALICE)
    money = {a: _balance(lab, a) for a in (ALICE, MERCHANT)}
    stock = _stock(lab, PLENTY_SKU)
    view = lab.saga.wait(lab.fire("happy", lines=[(PLENTY_SKU, 1)]), timeout=10)
    records = {r["service"]: r for r in participant_records(lab, view["order_id"], ALICE)}
    paid = {a: _balance(lab, a) - before for a, before in money.items()}
    moved = {k: v - stock[k] for k, v in _stock(lab, PLENTY_SKU).items()}
    payment = records["payment-service"]
    ok = (view["status"] == "completed"
          and records["user-service"]["status"] == "active"
          and records["order-service"]["status"] == "CONFIRMED"
          and records["inventory-service"]["status"] in ("RESERVED", "COMMITTED")
          and payment["status"] == "CHARGED" and payment["detail"].get("amount") == view["amount"]
          and paid == {ALICE: -view["amount"], MERCHANT: view["amount"]}
          and moved["available"] == -1 and moved["reserved"] + moved["sold"] == 1)
    return ok, (f"saga {view['saga_id']} {view['status']}: "
                + "; ".join(f"{r['service']} {r['request'].split()[1]} -> {r['http']} {r['status']}"
                            for r in records.values())
                + f"; balances moved {paid} (cents, amount {view['amount']}); {PLENTY_SKU} "
                f"available {moved['available']:+d}, "
                f"reserved/sold {moved['reserved'] + moved['sold']:+d}")


@checkpoint(SAGA, "보상 트랜잭션 동작 테스트: 역순 보상, 잔액·재고 원상 복구")
def saga_compensates(lab: Lab) -> tuple[bool, str]:
    from ecommerce.domain.payments import MERCHANT
    from labkit.lab.scenarios import (
        DECLINED_SKU,
        POOR_BALANCE,
        declined_customer,
        ensure_customer,
        ensure_stock,
    )

    sku = DECLINED_SKU  # what payment-declined orders: bob cannot pay for it
    customer = declined_customer(lab, [(sku, 1)])  # bob, unless he was funded since
    ensure_customer(lab, customer, POOR_BALANCE)
    ensure_stock(lab, [(sku, 1)])  # earlier runs may have sold it out: restock first
    money = {a: _balance(lab, a) for a in (customer, MERCHANT)}
    stock = _stock(lab, sku)
    view = lab.saga.wait(lab.fire("payment-declined", user=customer, lines=[(sku, 1)]),
                         timeout=10)
    steps = lab.saga.state(view["saga_id"]).steps
    done = [st.name for st in steps if view[st.name]["status"] == "succeeded"]
    expected = [st.compensation for st in reversed(steps) if st.compensation and st.name in done]
    order = compensation_order(lab, view["saga_id"])
    records = {r["service"]: r for r in participant_records(lab, view["order_id"], customer)}
    money_after = {a: _balance(lab, a) for a in money}
    stock_after = _stock(lab, sku)
    ok = (view["status"] == "compensated" and view["failed_step"] == "charge_payment"
          and order == expected
          and [c for c in order if c in ("release_stock", "cancel_order")]
          == ["release_stock", "cancel_order"]
          and records["order-service"]["status"] == "CANCELLED"
          and records["inventory-service"]["status"] == "RELEASED"
          and money_after == money and stock_after == stock)
    return ok, (f"saga {view['saga_id']} failed at {view['failed_step']} ({view['failure']}) "
                f"after {', '.join(done)}; compensations recorded in order {order} (reverse of "
                f"the steps: {expected}); order -> {records['order-service']['status']}, "
                f"reservation -> {records['inventory-service']['status']}, payment -> "
                f"{records['payment-service']['http']} {records['payment-service']['status']}; "
                f"balances {money} -> {money_after}; {sku} {stock} -> {stock_after}")


@checkpoint(SAGA, "분산 트랜잭션 상태 추적: 사가 스트림이 모든 결정을 먼저 기록, 조회 뷰와 일치")
def saga_tracked(lab: Lab) -> tuple[bool, str]:
    sid = lab.fire("happy", lines=[(PLENTY_SKU, 1)])
    view = lab.saga.wait(sid, timeout=10)
    stream = lab.stream(f"saga-{sid}")
    types = [e["event_type"] for e in stream]
    log = saga_log(lab, sid)
    late = decisions_first(log)
    effects = log[log["role"] == "effect"]
    lab.wait_for_projection(stream[-1]["position"], "sagas")
    projected = {k: v for k, v in lab.query(f"sagas/{sid}").items() if k not in _VIEW_META}
    diff = sorted(k for k in set(projected) | set(view) if projected.get(k) != view.get(k))
    ok = (types[0] == sg.SAGA_STARTED and types[-1] == sg.SAGA_COMPLETED
          and set(types) <= set(sg.SAGA_EVENTS) and not late and len(effects) >= 4 and not diff)
    return ok, (f"stream saga-{sid}: {len(stream)} events ({types[0]} … {types[-1]}), "
                f"{types.count(sg.STEP_STARTED)} StepStarted; {len(effects)} participant events "
                f"({', '.join(effects['event_type'])}) each come after the StepStarted that "
                "decided them" + (f" EXCEPT {late}" if late else "")
                + f"; query-service /api/queries/sagas/{sid} "
                + (f"equals lab.saga.status() in all {len(view)} fields" if not diff else
                   f"differs from the stream in {diff}"))


# Last of the section: over every saga the checks above (and the notebooks) ran.
checkpoint(SAGA, INVARIANTS_ITEM)(check_invariants)


# ---- CQRS -------------------------------------------------------------------------------------------
CQRS = "CQRS"


def _openapi_methods(lab: Lab, service: str) -> dict[str, set[str]]:
    spec = _get(lab, service, "/openapi.json")
    return {path: {m.upper() for m in ops} for path, ops in spec.get("paths", {}).items()
            if path.startswith("/api/")}


def _stores(ready: dict[str, Any]) -> set[str]:
    """The stores a /readyz answer checks (the student-code check `plugins` is not a store)."""
    return set(ready["checks"]) - {"plugins"}


@checkpoint(CQRS, "Command Service (쓰기) 분리 확인")
def command_side(lab: Lab) -> tuple[bool, str]:
    accepted = lab.command("create-user", name="Command Probe",
                           email=f"cmd.{uuid.uuid4().hex[:8]}@example.com")
    ready = _get(lab, "command-service", "/readyz")
    # Students' plugins (ecommerce.plugins) add their own ready check and /api/plugins/ routes.
    stores = set(ready["checks"]) - {"plugins"}
    writes = {p: m for p, m in _openapi_methods(lab, "command-service").items()
              if "POST" in m and not p.startswith("/api/plugins/")}
    event = lab.stream(f"user-{accepted['user_id']}")[-1]
    by_command = event["metadata"].get("command_id") == accepted["command_id"]
    ok = (accepted["status"] == "accepted" and stores == {"event_store"}
          and all(p.startswith("/api/commands/") for p in writes) and by_command)
    return ok, (f"create-user -> {accepted['status']}: event {event['event_type']} at log position "
                f"{accepted['position']} carries command_id {accepted['command_id'][:8]}… "
                f"(matches: {by_command}); command-service opens only {sorted(stores)}; "
                f"its write endpoints: {', '.join(sorted(writes))}")


@checkpoint(CQRS, "Query Service (읽기) 분리 확인")
def query_side(lab: Lab) -> tuple[bool, str]:
    ready = _get(lab, "query-service", "/readyz")
    methods = _openapi_methods(lab, "query-service")
    writes = sorted(p for p, m in methods.items() if m - {"GET", "HEAD"})
    refused = lab.http("query-service").post("/api/queries/users", json={}).status_code
    users = lab.query("users", limit=1)
    ok = (_stores(ready) == {"read_store"} and not writes and refused == 405
          and users["source"] == "materialized_view")
    return ok, (f"query-service /readyz checks only {sorted(_stores(ready))} (no event store); "
                f"{len(methods)} endpoints, all GET" + (f" except {writes}" if writes else "")
                + f"; POST /api/queries/users -> {refused}; answers come from "
                f"source={users['source']!r} at checkpoint {users['checkpoint']}")


@checkpoint(CQRS, "읽기/쓰기 성능 최적화 확인: 읽기 쪽을 따로 확장")
def read_write_scaling(lab: Lab) -> tuple[bool, str]:
    q, c = _manifest_replicas("query-service"), _manifest_replicas("command-service")
    reads, writes = [], []
    for i in range(10):
        t = time.perf_counter()
        lab.query("users", limit=20)
        reads.append((time.perf_counter() - t) * 1000)
        if i < 5:
            t = time.perf_counter()
            lab.command("create-user", name=f"Scale Probe {i}",
                        email=f"scale{i}.{uuid.uuid4().hex[:8]}@example.com")
            writes.append((time.perf_counter() - t) * 1000)
    live = ""
    if lab.mode == "cluster":
        api = getattr(lab.runtime, "api", None)
        if api is not None:
            dep = api.get("apps/v1", "Deployment", "query-service", lab.settings.namespace) or {}
            live = f"; live query-service readyReplicas={(dep.get('status') or {}).get('readyReplicas')}"
    return q > 1 and q >= c, (
        f"manifests/03-cqrs: query-service replicas={q}, command-service replicas={c} "
        f"(each side scales on its own){live}; measured here: query p50 "
        f"{statistics.median(reads):.1f} ms, command p50 {statistics.median(writes):.1f} ms")


@checkpoint(CQRS, "데이터 일관성 모델 이해: 최종 일관성 지연 측정")
def eventual_consistency(lab: Lab) -> tuple[bool, str]:
    df = lab.projection_lag(3)
    lags = ", ".join(f"{v:.0f}" for v in df["lag_ms"])
    return True, (f"3 commands each became visible in query-service after {lags} ms "
                  "(eventually consistent: never at once, always within the timeout)")


# ---- Event Sourcing -----------------------------------------------------------------------------------
ES = "Event Sourcing"


@checkpoint(ES, "Event Store 이벤트 저장 확인: 스트림 버전, 전역 순서, 낙관적 동시성")
def events_stored(lab: Lab) -> tuple[bool, str]:
    probe = lab.command("create-user", name="Version Probe",
                        email=f"version.{uuid.uuid4().hex[:8]}@example.com")
    user_id = probe["user_id"]
    log = lab.events(limit=1000)
    positions = list(log["position"])
    ordered = all(a < b for a, b in itertools.pairwise(positions))
    streams = list(dict.fromkeys(log["stream_id"]))[-5:]
    gaps = []
    for sid in streams:
        versions = [e["version"] for e in lab.stream(sid)]
        if versions != list(range(1, len(versions) + 1)):
            gaps.append(f"{sid}: {versions}")
    # Two writers read version 1; the first update wins, the second is refused.
    commands = lab.http("command-service")
    first = commands.post("/api/commands/update-user", json={
        "user_id": user_id, "name": "First Writer", "expected_version": 1})
    second = commands.post("/api/commands/update-user", json={
        "user_id": user_id, "name": "Second Writer", "expected_version": 1})
    reason = second.json().get("reason") if second.status_code >= 400 else None
    final = lab.stream(f"user-{user_id}")
    ok = (ordered and not gaps and first.status_code == 202 and second.status_code == 409
          and reason == "version_conflict" and len(final) == 2
          and final[-1]["data"].get("name") == "First Writer")
    return ok, (f"{len(positions)} events, global positions strictly increasing: {ordered}; "
                f"versions 1..n with no gap in {len(streams)} streams"
                + (f" (gaps: {gaps})" if gaps else "")
                + f"; two updates of user-{user_id} both expecting v1: first -> "
                f"{first.status_code}, second -> {second.status_code} {reason}; the stream "
                f"is at v{len(final)} with name {final[-1]['data'].get('name')!r}")


@checkpoint(ES, "Event Processor (Job) 프로젝션 생성: 체크포인트가 로그 끝까지 따라잡음")
def processor_job(lab: Lab) -> tuple[bool, str]:
    _ensure_user(lab)
    head = _head(lab)
    output = lab.run_job("event-processor")
    cps = lab.checkpoints()
    behind = {r.projection: int(head - r.position) for r in cps.itertuples() if r.position < head}
    # Ahead of a head read before the job ran: the read model is from another (replaced) log.
    ahead = {r.projection: int(r.position) for r in cps.itertuples()
             if r.position > _head(lab)}
    rebuilt = _get(lab, "query-service", "/readyz")["checks"].get("read_store", "ok")
    summary = "started " + str(output).strip()[:80] if lab.mode == "cluster" else "ran"
    for line in str(output).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "caught up":
            summary = f"caught up: applied {entry.get('events')} new events"
    ok = not cps.empty and not behind and not ahead
    return ok, (f"event-processor job {summary}; log head when it started: "
                f"{head}; checkpoints: " + ", ".join(f"{r.projection}={r.position}"
                                                    for r in cps.itertuples())
                + (f"; behind: {behind}" if behind else " (all at or past the head)")
                + (f"; AHEAD of the log (it was replaced; the event-processor rebuilds the read "
                   f"model): {ahead}" if ahead else "")
                + (f"; query-service says: {rebuilt}" if rebuilt != "ok" else ""))


def _users_view(lab: Lab) -> list[dict[str, Any]]:
    docs = lab.query("users", limit=1000)["users"]
    return sorted(docs, key=lambda d: d["id"])


def _stats(lab: Lab) -> dict[str, int]:
    s = lab.query("user-stats")
    return {"total_users": s["total_users"], "active_users": s["active_users"]}


@checkpoint(ES, "이벤트 재생 기능 테스트: 재생 결과 = 기존 상태")
def replay_equals_state(lab: Lab) -> tuple[bool, str]:
    _ensure_user(lab)
    lab.wait_for_projection(_head(lab))
    before_users, before_stats = _users_view(lab), _stats(lab)
    result = lab.replay()
    lab.wait_for_projection(_head(lab))
    after_users, after_stats = _users_view(lab), _stats(lab)
    same = before_users == after_users and before_stats == after_stats
    return same, (f"replay rebuilt {result['projections']} from {result['events_count']} events "
                  f"at {result['events_per_s']:,.0f} events/s; {len(after_users)} users and "
                  f"stats {after_stats} " + ("equal the state before the replay" if same else
                                             f"DIFFER from before: {before_stats}"))


@checkpoint(ES, "상태 복원 메커니즘 확인: 이벤트 fold = 조회 모델")
def fold_equals_view(lab: Lab) -> tuple[bool, str]:
    _ensure_user(lab)
    lab.wait_for_projection(_head(lab))
    users = lab.query("users", limit=1000)["users"]
    user_id = max(users, key=lambda u: u.get("version", 0))["id"]  # the longest history
    folded = lab.user_at(user_id)
    view = lab.query(f"users/{user_id}")
    fields = ("id", "name", "email", "status", "tier", "version")
    diff = {f: (folded.get(f), view.get(f)) for f in fields if folded.get(f) != view.get(f)}
    first = lab.stream(f"user-{user_id}")[0]["position"]
    past = lab.user_at(user_id, first)
    ok = not diff and past["version"] == 1
    return ok, (f"user {user_id}: folding {folded['version']} events gives "
                + ("exactly the query-service document" if not diff else f"differences {diff}")
                + f" ({', '.join(f'{f}={folded[f]!r}' for f in ('name', 'status', 'version'))}); "
                f"time travel to position {first}: version {past['version']}")


# ---- Cleanup (06-cleanup) ---------------------------------------------------------------------------
CLEANUP = "Cleanup"


def lab_processes(lab: Lab) -> list[dict[str, Any]]:
    """Processes on this machine started for this lab's data directory (local mode)."""
    import psutil

    data_dir = str(lab.settings.data_dir)
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if not any(part.startswith(("ecommerce.", "labkit.")) for part in cmd[1:3]) or "-m" not in cmd[:2]:
            continue
        try:
            env = p.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if env.get("LABKIT_DATA_DIR") == data_dir:
            found.append({"pid": p.info["pid"], "command": " ".join(cmd[1:])})
    return found


def _cluster_leftovers(lab: Lab) -> list[str]:
    from labkit.runtime.manifests import LAB_SELECTOR, TESTING_NAMESPACE, load_all

    api = lab.cluster_runtime("the cleanup check").api
    kinds = {(o["apiVersion"], o["kind"]) for objs in load_all().values() for o in objs
             if o["kind"] != "Namespace"} | {("batch/v1", "Job"), ("v1", "Pod")}
    left = []
    for api_version, kind in sorted(kinds):
        if api_version.startswith("gateway.") and not api.has_kind(api_version, kind):
            continue
        for ns in (lab.settings.namespace, TESTING_NAMESPACE):
            for o in api.list_objects(api_version, kind, ns, label_selector=LAB_SELECTOR):
                left.append(f"{kind} {ns}/{o['metadata']['name']}")
    return left


@checkpoint(CLEANUP, "실행 중인 워크로드 없음 (lab.status())")
def nothing_running(lab: Lab) -> tuple[bool, str]:
    rows = _status_rows(lab)
    gone = {"not started", "stopped", "missing"}
    left = [f"{r['_name']}={r['_state']}" for r in rows if r["_state"] not in gone]
    return not left, ("still running: " + ", ".join(left)) if left else (
        f"{len(rows)} workloads, none running: "
        + ", ".join(sorted({r['_state'] for r in rows})))


@checkpoint(CLEANUP, "남은 프로세스 / 쿠버네티스 오브젝트 없음")
def nothing_left(lab: Lab) -> tuple[bool, str]:
    if lab.mode == "cluster":
        left = _cluster_leftovers(lab)
        return not left, ("left in the cluster: " + ", ".join(left[:10])) if left else (
            f"no object labelled app.kubernetes.io/part-of=labkit in {lab.settings.namespace} "
            "or testing")
    procs = lab_processes(lab)
    return not procs, ("still running: " + "; ".join(f"pid {p['pid']} {p['command']}"
                                                     for p in procs)) if procs else (
        f"no process on this machine runs `python -m labkit...` for {lab.settings.data_dir}")


@checkpoint(CLEANUP, "랩 데이터 삭제 (로컬: 데이터 디렉터리 / 클러스터: 네임스페이스)")
def data_gone(lab: Lab) -> tuple[bool, str]:
    if lab.mode == "cluster":
        from labkit.runtime.manifests import TESTING_NAMESPACE

        left = [ns for ns in (lab.settings.namespace, TESTING_NAMESPACE)
                if lab.cluster_runtime("the cleanup check").api.get("v1", "Namespace", ns) is not None]
        return not left, (f"namespaces still there: {left}" if left else
                          f"namespaces {lab.settings.namespace} and {TESTING_NAMESPACE} are gone "
                          "(with the PostgreSQL PVC and Secret in them)")
    d = lab.settings.data_dir
    return not d.exists(), (f"{d} still exists: run lab.reset()" if d.exists() else
                            f"{d} is gone (event store, read model, logs, ports)")
