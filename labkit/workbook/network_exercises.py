"""Notebook 01's exercises: the student writes a routing rule or a NetworkPolicy, the running
system uses it, and a check cell says ✅, or ❌ with what it observed and what it expected.

    from labkit.workbook import network_exercises as ex
    ex.check_route(lab, MY_ROUTE, "GET", "/shop/stock", service="inventory-service",
                   upstream="/api/inventory")
    ex.check_policy(lab, MY_POLICY, target="command-service")

Routes: local mode writes the YAML into the lab's data directory (`<data dir>/routes/`), which
the local gateway re-reads when it changes (`labkit.runtime.gateway`), then sends the request
through the gateway and reads the way it went (`lab.trace`). Cluster mode applies the YAML
(`kubectl apply`) and sends the request through the cluster's Gateway.

Policies: local mode has no CNI to enforce one, so the policy is checked against the real call
graph (`labkit.lab.topology.call_graph`, what the services do call): every caller allowed,
nobody else. Cluster mode applies it and probes the allowed call from the caller's pod.

A check never raises (the cells after it still run): a student edition with the solution
stripped (`None`) gets "⏳ not done yet".
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecommerce.waiting import WaitTimeout, wait_until

if TYPE_CHECKING:
    from labkit.lab import Lab

#: Container port every service listens on (the Services map port 80 to it).
SERVICE_PORT = 8080
NAME_LABEL = "app.kubernetes.io/name"
#: How long a check waits for the gateway to serve a new rule (cluster: the Gateway controller).
ROUTE_WAIT_S = {"local": 5.0, "cluster": 30.0}


@dataclass
class ExerciseResult:
    """One exercise check: ok is True (✅), False (❌) or None (⏳ not done yet)."""

    exercise: str
    ok: bool | None
    message: str

    @property
    def line(self) -> str:
        icon = {True: "✅", False: "❌", None: "⏳"}[self.ok]
        return f"{icon} {self.exercise}: {self.message}"

    def __repr__(self) -> str:
        return self.line

    def _repr_html_(self) -> str:
        import html

        color = {True: "#1b5e20", False: "#b71c1c", None: "#6d4c41"}[self.ok]
        return (f'<div style="white-space: pre-wrap; color: {color}; font-size: 1.05em;">'
                f"{html.escape(self.line)}</div>")


NOT_DONE = ("아직 답이 없습니다 (not done yet): 위 셀의 `None`을 여러분의 YAML로 바꾸고 "
            "두 셀을 다시 실행하세요")


def _load_yaml(text: str) -> list[dict[str, Any]]:
    import yaml

    return [o for o in yaml.safe_load_all(text) if o]


def _kubectl_apply(lab: Lab, text: str) -> str:
    done = subprocess.run(["kubectl", "apply", "-n", lab.settings.namespace, "-f", "-"],
                          input=text, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout.strip()


# ---- routes ---------------------------------------------------------------------------------------
def save_route(lab: Lab, name: str, text: str) -> str:
    """Make the rules in `text` (HTTPRoute YAML) live: local mode writes
    `<data dir>/routes/<name>.yaml` for the gateway; cluster mode applies it. Returns where."""
    from labkit.runtime.routes import routes_from, student_routes_dir

    objects = _load_yaml(text)
    try:
        found = routes_from(objects)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the HTTPRoute is missing {exc}: it needs metadata.name, and "
                         "backendRefs[].name in each rule") from None
    if not found:
        raise ValueError("no HTTPRoute path rule found: the YAML needs kind: HTTPRoute, "
                         "spec.rules[].matches[].path and spec.rules[].backendRefs[]")
    if lab.mode == "cluster":
        return _kubectl_apply(lab, text)
    folder = student_routes_dir(lab.settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # the gateway never reads half a file
    return str(path)


def remove_routes(lab: Lab) -> list[str]:
    """Local mode: delete every student route file (the gateway forgets them)."""
    from labkit.runtime.routes import student_routes_dir

    folder = student_routes_dir(lab.settings.data_dir)
    gone = []
    for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        f.unlink()
        gone.append(f.name)
    return gone


def _route_way(lab: Lab, method: str, path: str, host: str | None) -> dict[str, Any]:
    row = lab.trace(method, path, host=host)
    if lab.mode == "cluster":  # the Gateway does not say who answered: the rule says
        row["backend"] = row.get("backend") or "(gateway)"
    return row


def check_route(lab: Lab, text: str | None, method: str, path: str, *, service: str,
                upstream: str, host: str | None = None, name: str = "exercise",
                exercise: str = "라우팅 규칙") -> ExerciseResult:
    """Save the student's route, send `method path` (with `Host: host`) through the gateway,
    and compare the way it went with the expected backend `service` and `upstream` path."""
    if text is None:
        return ExerciseResult(exercise, None, NOT_DONE)
    try:
        where = save_route(lab, name, text)
    except Exception as exc:  # the student's YAML: say what is wrong, never raise
        return ExerciseResult(exercise, False, f"규칙을 읽지 못했습니다: {type(exc).__name__}: {exc}")
    try:  # the gateway picks the saved route up within moments: a 404 until then
        row = wait_until(lambda: _route_way(lab, method, path, host),
                         until=lambda r: r["status"] != 404,
                         timeout=ROUTE_WAIT_S.get(lab.mode, 5.0), interval=0.1,
                         what="the gateway to pick up the route")
    except WaitTimeout as late:
        row = late.last  # still 404: no rule matches (said below)
    except Exception as exc:
        return ExerciseResult(exercise, False, f"요청이 실패했습니다: {type(exc).__name__}: {exc}")
    seen_upstream = str(row.get("upstream") or "")
    expected = f"{service} 가 {upstream}... 로 받고 200"
    observed = (f"status {row['status']}, backend {row.get('backend')}, upstream "
                f"{row.get('upstream')}, rule {row.get('route')}")
    ok = row["status"] == 200 and (
        lab.mode == "cluster" or (row.get("backend") == service
                                  and seen_upstream.startswith(upstream)))
    request = f"{method} {path}" + (f" (Host: {host})" if host else "")
    if ok:
        return ExerciseResult(exercise, True, f"{request} → {observed} (saved: {where})")
    hint = ""
    if row["status"] == 404:
        hint = " — 일치하는 규칙이 없습니다: 경로(matches.path.value)와 hostnames를 확인하세요"
    elif row.get("backend") != service:
        hint = " — 다른 서비스로 갔습니다: backendRefs[].name을 확인하세요"
    elif not seen_upstream.startswith(upstream):
        hint = (" — 서비스가 받은 경로가 다릅니다: filters의 URLRewrite "
                "(ReplacePrefixMatch)를 확인하세요")
    return ExerciseResult(exercise, False,
                          f"{request}: observed {observed}; expected {expected}{hint}")


# ---- NetworkPolicy --------------------------------------------------------------------------------
def callers(target: str) -> set[str]:
    """The services that call `target` over HTTP inside the namespace (the real call graph; the
    gateway's route traffic comes from outside and has its own rule)."""
    from labkit.lab.topology import call_graph

    return {a for a, b, kind in call_graph() if b == target and kind == "http"}


def policy_allows(text: str, target: str) -> tuple[set[str], set[int], list[str]]:
    """From NetworkPolicy YAML: the pods (by `app.kubernetes.io/name`, same namespace) allowed
    into `target`, the ports, and the problems that make it not a policy for `target`."""
    problems: list[str] = []
    allowed: set[str] = set()
    ports: set[int] = set()
    policies = [o for o in _load_yaml(text) if o.get("kind") == "NetworkPolicy"]
    if not policies:
        return allowed, ports, ["kind: NetworkPolicy 오브젝트가 없습니다"]
    for obj in policies:
        spec = obj.get("spec") or {}
        selected = ((spec.get("podSelector") or {}).get("matchLabels") or {}).get(NAME_LABEL)
        if selected != target:
            problems.append(f"spec.podSelector가 {target}가 아니라 {selected!r}를 고릅니다")
            continue
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            problems.append("policyTypes에 Ingress가 없습니다")
        for rule in spec.get("ingress") or []:
            rule_ports = {int(p["port"]) for p in rule.get("ports") or [] if "port" in p}
            for peer in rule.get("from") or []:
                if "namespaceSelector" in peer or "ipBlock" in peer:
                    continue  # outside the namespace: not a service of this lab
                name = ((peer.get("podSelector") or {}).get("matchLabels") or {}).get(NAME_LABEL)
                if name:
                    allowed.add(str(name))
                    ports |= rule_ports or {SERVICE_PORT}
    return allowed, ports, problems


def _probe_from(lab: Lab, caller: str, target: str) -> tuple[bool, str]:
    """Cluster mode: call `target`'s /healthz from inside `caller`'s pod."""
    url = f"http://{target}.{lab.settings.namespace}.svc.cluster.local/healthz"
    code = f"import httpx; print(httpx.get({url!r}, timeout=5).status_code)"
    done = subprocess.run(["kubectl", "exec", "-n", lab.settings.namespace, f"deploy/{caller}",
                           "--", "python", "-c", code], capture_output=True, text=True, timeout=60)
    out = (done.stdout + done.stderr).strip()
    return done.returncode == 0 and out.endswith("200"), out[-200:]


def check_policy(lab: Lab, text: str | None, target: str,
                 exercise: str = "NetworkPolicy") -> ExerciseResult:
    """Compare the pods the student's policy lets into `target` with the services that really
    call it. Cluster mode also applies it and probes each caller -> target from its pod."""
    if text is None:
        return ExerciseResult(exercise, None, NOT_DONE)
    try:
        allowed, ports, problems = policy_allows(text, target)
    except Exception as exc:
        return ExerciseResult(exercise, False, f"YAML을 읽지 못했습니다: {type(exc).__name__}: {exc}")
    need = callers(target)
    missing, extra = sorted(need - allowed), sorted(allowed - need)
    if SERVICE_PORT not in ports and allowed:
        problems.append(f"허용한 포트 {sorted(ports)}에 서비스 포트 {SERVICE_PORT}가 없습니다")
    if missing:
        problems.append(f"실제로 {target}를 부르는 {', '.join(missing)}가 막힙니다 "
                        "(호출 그래프에 있는 호출)")
    if extra:
        problems.append(f"{', '.join(extra)}는 {target}를 부르지 않습니다: 최소 권한이 아닙니다")
    observed = f"허용: {sorted(allowed) or '없음'} (포트 {sorted(ports) or '-'})"
    expected = f"허용해야 할 호출자: {sorted(need)} (포트 {SERVICE_PORT})"
    if problems:
        return ExerciseResult(exercise, False,
                              f"observed {observed}; expected {expected} — " + "; ".join(problems))
    if lab.mode != "cluster":
        return ExerciseResult(exercise, True, (
            f"{observed} = 실제 호출 그래프의 호출자 (local 모드: 정책을 집행할 CNI가 없어 "
            "호출 그래프와 비교했습니다; LABKIT_MODE=cluster에서는 적용하고 실제로 호출해 봅니다)"))
    try:
        _kubectl_apply(lab, text)
        probes = {c: _probe_from(lab, c, target) for c in sorted(need)}
    except Exception as exc:
        return ExerciseResult(exercise, False, f"적용·호출 실패: {type(exc).__name__}: {exc}")
    bad = {c: out for c, (ok, out) in probes.items() if not ok}
    if bad:
        return ExerciseResult(exercise, False, f"applied; {observed}; but the calls failed: {bad}")
    return ExerciseResult(exercise, True, f"applied; {observed}; " + ", ".join(
        f"{c} → {target}/healthz 200" for c in probes))


def student_route_files(lab: Lab) -> list[Path]:
    """Local mode: the student's route files the gateway serves now."""
    from labkit.runtime.routes import student_routes_dir

    folder = student_routes_dir(lab.settings.data_dir)
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []
