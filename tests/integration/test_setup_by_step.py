"""00-setup deploys only the course's base (`lab.up(step="00-base")`): its checkpoint passes on
what is there, says what is not deployed yet, and is n/a (never green) where nothing runs."""

from __future__ import annotations

from pathlib import Path

from labkit.lab import Lab
from labkit.workbook import checks
from tests.integration.labs import lab_settings


def test_the_setup_checkpoint_after_only_the_base_step(tmp_path: Path) -> None:
    lab = Lab(lab_settings(tmp_path / "data"), gateway_port=0)
    try:
        lab.up(step="00-base", progress=False)
        by_item = {r.item: r for r in checks.run(lab, "Setup")}
        up = by_item["모든 서비스 준비 완료 (lab.status())"]
        assert up.ok is True and "postgres (event store)=ready" in up.evidence
        assert "not deployed yet" in up.evidence and "02-saga" in up.evidence
        commands = by_item["매니페스트의 컨테이너 명령 그대로 실행"]
        assert commands.ok is None and "no service process" in commands.evidence
        lab.up(step="02-saga", progress=False)  # the manifests' containers now: checked for real
        again = {r.item: r for r in checks.run(lab, "Setup")}
        assert again["매니페스트의 컨테이너 명령 그대로 실행"].ok is True
        assert "payment-service=ready" in again["모든 서비스 준비 완료 (lab.status())"].evidence
    finally:
        lab.reset()
