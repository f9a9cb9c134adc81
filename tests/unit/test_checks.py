"""Checkpoints: the registry and its messages, then every section against a real local lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.workbook import checks
from labkit.workbook.checks import CheckpointError, CheckResult


@pytest.fixture
def scratch_section(monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty 'Saga' section for registering test checks (restored afterwards)."""
    monkeypatch.setitem(checks.REGISTRY, "Saga", [])
    return "Saga"


def test_sections_follow_the_course_checklist():
    assert checks.COURSE_SECTIONS == ("Kubernetes Native", "Saga", "CQRS", "Event Sourcing")
    assert checks.SECTIONS[0] == "Setup" and checks.SECTIONS[-1] == "Cleanup"
    for name in ("cqrs", "CQRS", "event-sourcing", "Event Sourcing", "es", "k8s", "kubernetes native"):
        assert checks.section_name(name) in checks.SECTIONS
    with pytest.raises(KeyError, match="unknown checkpoint section"):
        checks.section_name("service mesh")


def test_every_implemented_section_has_the_course_items():
    assert len(checks.items("Kubernetes Native")) == 5
    assert len(checks.items("CQRS")) == 4
    assert len(checks.items("Event Sourcing")) == 4
    assert any("Command Service" in i for i in checks.items("CQRS"))
    assert any("재생" in i for i in checks.items("Event Sourcing"))


def test_registering_running_and_reporting_checks(scratch_section):
    @checks.checkpoint("saga", "Saga Orchestrator Job 정상 실행")
    def passes(lab):
        return True, f"ran against {lab}"

    @checks.checkpoint("Saga", "보상 트랜잭션 동작 테스트")
    def explodes(lab):
        raise RuntimeError("payment-service unreachable")

    @checks.checkpoint("Saga", "클러스터 전용 항목")
    def not_here(lab):
        return CheckResult("", None, "cluster only")

    results = checks.run("LAB", "Saga")
    assert [r.ok for r in results] == [True, False, None]
    assert results[0].evidence == "ran against LAB" and results[0].section == "Saga"
    assert results[1].evidence == "RuntimeError: payment-service unreachable"
    assert results[2].item == "클러스터 전용 항목"  # an empty item takes the registered one
    df = checks.table(results)
    assert list(df.columns) == ["section", "item", "status", "evidence"]
    assert list(df["status"]) == ["✅ ok", "❌ FAIL", "➖ n/a"]
    assert "pre-wrap" in checks.report(results).to_html()


def test_re_registering_an_item_replaces_it(scratch_section):
    checks.checkpoint("Saga", "item")(lambda lab: (False, "old"))
    checks.checkpoint("Saga", "item")(lambda lab: (True, "new"))
    assert [r.evidence for r in checks.run(None, "Saga")] == ["new"]


def test_assert_ok_raises_in_korean_and_english_with_the_evidence():
    good = CheckResult("a", True, "fine", "CQRS")
    skipped = CheckResult("b", None, "cluster only", "CQRS")
    bad = CheckResult("Query Service (읽기) 분리 확인", False, "readyz lists event_store", "CQRS")
    assert checks.assert_ok([good, skipped]) is None
    with pytest.raises(CheckpointError) as err:
        checks.assert_ok([good, bad, skipped])
    message = str(err.value)
    assert "체크포인트 1개가 실패했습니다" in message
    assert "1 of 3 checkpoint(s) failed" in message
    assert "Query Service (읽기) 분리 확인: readyz lists event_store" in message
    with pytest.raises(CheckpointError, match="No checkpoint ran"):
        checks.assert_ok([])


def test_network_policy_rules_read_the_manifests():
    df = checks.network_policy_rules()
    deny = df[df["policy"] == "default-deny-all"]
    assert set(deny["direction"]) == {"Ingress", "Egress"}
    assert set(deny["peers"]) == {"(none: denied)"}
    postgres = df[(df["policy"] == "allow-ingress-postgres")]
    assert "command-service" in set(postgres["peers"]) and "query-service" not in set(postgres["peers"])
    assert set(postgres["ports"]) == {"TCP/5432"}


def test_load_tester_is_cluster_only():
    from labkit.lab import LabError

    class LocalLab:
        mode = "local"

    with pytest.raises(LabError, match="cluster only"):
        checks.load_tester(LocalLab(), "nslookup", "command-service")


# ---- against a real lab -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The whole system as local processes in a temporary data directory."""
    from tests.integration.labs import full_lab

    with full_lab(tmp_path_factory.mktemp("checks") / "data") as lab:
        yield lab


@pytest.mark.slow
@pytest.mark.parametrize("section", ["Setup", "Kubernetes Native", "CQRS", "Event Sourcing"])
def test_sections_pass_against_the_running_system(real_lab, section):
    results = checks.run(real_lab, section)
    assert results
    failed = [f"{r.item}: {r.evidence}" for r in results if r.ok is False]
    assert not failed, failed
    checks.assert_ok(results)
    if section == "Kubernetes Native":  # local mode: the gateway exists only in a cluster
        gateway = next(r for r in results if "게이트웨이" in r.item)
        assert gateway.ok is None and "cluster only" in gateway.evidence


@pytest.mark.slow
def test_checks_fail_when_the_system_is_broken(real_lab):
    # Close our keep-alive connections first: the server's port must not be left in TIME_WAIT,
    # or the local runtime refuses to restart it on the same port for a minute.
    real_lab.close()
    real_lab.kill("query-service")
    try:
        results = checks.run(real_lab, "CQRS")
        assert [r.ok for r in results].count(False) >= 3, results
        with pytest.raises(CheckpointError, match="ConnectError"):
            checks.assert_ok(results)
    finally:
        real_lab.close()
        real_lab.up(progress=False)


@pytest.mark.slow
def test_cleanup_checks_see_what_is_left_then_nothing(real_lab):
    real_lab.down()
    results = {r.item: r for r in checks.run(real_lab, "Cleanup")}
    assert [r.ok for r in results.values()] == [True, True, False]  # data directory still there
    real_lab.reset()
    checks.assert_ok(checks.run(real_lab, "Cleanup"))
    real_lab.up(progress=False)  # leave it running for the fixture's own teardown
    assert checks.lab_processes(real_lab)
