"""Notebook 01's exercise checks: never raise, "not done yet" for the student edition's stub,
and a NetworkPolicy compared with the real call graph (what the services do call)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from labkit.workbook import network_exercises as ex

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: student-allow-command-service}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: command-service}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app.kubernetes.io/name: %s}}
    ports: [{protocol: TCP, port: %d}]
"""


def _lab(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(mode="local", settings=SimpleNamespace(data_dir=tmp_path))


def test_the_student_editions_stub_is_not_done_yet_and_nothing_is_written(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    for result in (ex.check_route(lab, None, "GET", "/x", service="s", upstream="/"),
                   ex.check_policy(lab, None, "command-service")):
        assert result.ok is None and result.line.startswith("⏳") and "not done yet" in result.line
    assert ex.student_route_files(lab) == []


def test_the_callers_come_from_the_call_graph() -> None:
    assert ex.callers("command-service") == {"user-service"}
    assert ex.callers("payment-service") == {"saga-orchestrator"}


def test_the_least_privilege_policy_passes_in_local_mode(tmp_path: Path) -> None:
    result = ex.check_policy(_lab(tmp_path), POLICY % ("user-service", 8080), "command-service")
    assert result.ok is True and "호출 그래프" in result.message


def test_too_little_too_much_or_the_wrong_port_is_explained(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    wrong = ex.check_policy(lab, POLICY % ("query-service", 8080), "command-service")
    assert wrong.ok is False
    assert "user-service가 막힙니다" in wrong.message and "query-service는" in wrong.message
    port = ex.check_policy(lab, POLICY % ("user-service", 80), "command-service")
    assert port.ok is False and "8080" in port.message
    other = ex.check_policy(lab, POLICY.replace("name: command-service", "name: query-service")
                            % ("user-service", 8080), "command-service")
    assert other.ok is False and "podSelector" in other.message
    broken = ex.check_policy(lab, "kind: [", "command-service")
    assert broken.ok is False and broken.line.startswith("❌")


def test_a_route_that_is_not_yaml_fails_without_raising_and_a_good_one_is_saved(tmp_path: Path
                                                                                ) -> None:
    lab = _lab(tmp_path)
    bad = ex.check_route(lab, "kind: HTTPRoute\nmetadata: {name: x}\nspec: {}", "GET", "/x",
                         service="s", upstream="/")
    assert bad.ok is False and "no HTTPRoute path rule" in bad.message
    nameless = ex.check_route(lab, "kind: HTTPRoute\nspec: {rules: [{backendRefs: [{name: s}]}]}",
                              "GET", "/x", service="s", upstream="/")
    assert nameless.ok is False and "metadata.name" in nameless.message
    from tests.unit.test_student_routes import SHOP

    where = ex.save_route(lab, "shop-stock", SHOP)
    assert where.endswith("routes/shop-stock.yaml") and len(ex.student_route_files(lab)) == 1
    assert ex.remove_routes(lab) == ["shop-stock.yaml"] and ex.student_route_files(lab) == []
