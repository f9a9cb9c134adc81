"""Checkpoints: the registry and its messages, then every section against a real local lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.lab import Lab
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
    shown = checks.report(results)._repr_html_()
    assert "pre-wrap" in shown and "RuntimeError: payment-service unreachable" in shown


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
    plane = df[df["policy"] == "allow-gateway-data-plane"]
    assert set(plane["pods"]) == {"gateway.networking.k8s.io/gateway-name=labkit-gateway"}
    assert "anywhere" in set(plane[plane["direction"] == "Ingress"]["peers"])


def test_load_tester_is_cluster_only():
    from labkit.lab import LabError

    class LocalLab:
        mode = "local"

    with pytest.raises(LabError, match="cluster only"):
        checks.load_tester(LocalLab(), "nslookup", "command-service")


# ---- against a real lab -------------------------------------------------------------------------
# One lab for the module (starting one is slow), but no test depends on another: the `lab`
# fixture brings it back to running with every service ready before each test, and a test that
# breaks the data (the books) restores it before it ends.
@pytest.fixture(scope="module")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The whole system as local processes in a temporary data directory."""
    from tests.integration.labs import full_lab

    with full_lab(tmp_path_factory.mktemp("checks") / "data") as lab:
        yield lab


@pytest.fixture
def lab(real_lab: Lab) -> Lab:
    """The module's lab, running and ready, whatever the test before this one did to it."""
    # Close our keep-alive connections first: a server port left in TIME_WAIT would keep the
    # local runtime from restarting that server on the same port.
    real_lab.close()
    real_lab.up(progress=False)
    return real_lab


@pytest.mark.slow
@pytest.mark.parametrize("section", ["Setup", "Kubernetes Native", "CQRS", "Event Sourcing"])
def test_sections_pass_against_the_running_system(lab, section):
    results = checks.run(lab, section)
    assert results
    failed = [f"{r.item}: {r.evidence}" for r in results if r.ok is False]
    assert not failed, failed
    checks.assert_ok(results)
    if section == "Kubernetes Native":
        by_item = {r.item.split(":")[0].split(" (")[0]: r for r in results}
        # Checked for real through the local gateway...
        assert by_item["게이트웨이 설치 및 동작"].ok is True
        routing = by_item["기본 라우팅 동작 확인"]
        assert routing.ok is True and "Host api.local" in routing.evidence
        assert "Ingress" in routing.evidence and "HTTPRoute" in routing.evidence
        # ...while what only a cluster has is n/a with the reason, never green.
        for item in ("서비스 간 ClusterIP 통신 확인", "DNS 기반 서비스 디스커버리 동작"):
            assert by_item[item].ok is None and "cluster only" in by_item[item].evidence, item


@pytest.mark.slow
def test_routing_fails_when_the_gateway_is_down(lab):
    lab.close()
    lab.kill("gateway")
    result = next(r for r in checks.run(lab, "Kubernetes Native") if r.item.startswith("기본 라우팅"))
    assert result.ok is False and "ConnectError" in result.evidence


@pytest.mark.slow
def test_the_invariant_check_is_the_saga_checkpoint_and_sees_a_broken_state(lab):
    from labkit.lab.scenarios import ALICE, ensure_customer

    assert checks.INVARIANTS_ITEM in checks.items("Saga")
    assert checks.items("Saga")[-1] == checks.INVARIANTS_ITEM  # after the sagas the others ran
    ensure_customer(lab, ALICE)
    lab.saga.wait(lab.fire("happy"), timeout=30)
    fine = checks.check_invariants(lab)
    assert fine.ok is True and fine.evidence.count("✅") == 5
    try:
        # Break the books: an order placed and charged behind the saga's back, never confirmed
        # (payment-service refuses a charge with no order behind it).
        placed = lab.http("order-service").post(
            "/api/orders", json={"user_id": ALICE, "lines": [{"sku": "MOUSE-WL", "quantity": 1}]})
        assert placed.status_code == 201, placed.text
        charged = lab.http("payment-service").post(
            "/api/payments", json={"order_id": placed.json()["order_id"], "account_id": ALICE,
                                   "amount": placed.json()["total"]})
        assert charged.status_code == 201, charged.text
        broken = checks.check_invariants(lab)
        registered = next(cp for cp in checks.REGISTRY["Saga"] if cp.item == checks.INVARIANTS_ITEM)
        assert broken.ok is False and "❌" in broken.evidence
        assert checks.run_one(lab, registered).ok is False  # 05's checkpoint agrees
    finally:
        lab.reset()  # the books stay broken otherwise: start the next test from clean data
        lab.up(progress=False)


@pytest.mark.slow
def test_checks_fail_when_the_system_is_broken(lab):
    lab.close()
    lab.kill("query-service")
    results = checks.run(lab, "CQRS")
    assert [r.ok for r in results].count(False) >= 3, results
    with pytest.raises(CheckpointError, match="ConnectError"):
        checks.assert_ok(results)


@pytest.mark.slow
def test_cleanup_checks_see_what_is_left_then_nothing(lab):
    lab.down()
    results = {r.item: r for r in checks.run(lab, "Cleanup")}
    assert [r.ok for r in results.values()] == [True, True, False]  # data directory still there
    lab.reset()
    checks.assert_ok(checks.run(lab, "Cleanup"))
