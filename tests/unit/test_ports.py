"""labkit.runtime.ports: a port a lab keeps (maybe for a service it has not started yet) is
never given to another lab on the machine."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from labkit.runtime import ports


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    registry = tmp_path / "registry"
    monkeypatch.setattr(ports, "registry", lambda: registry)
    return registry


def _lab(tmp_path: Path, name: str, kept: dict[str, int] | None = None) -> Path:
    data = tmp_path / name
    data.mkdir()
    if kept is not None:
        (data / "runtime.json").write_text(json.dumps({"processes": {}, "ports": kept}))
    return data


def _age(registry: Path, port: int) -> None:
    old = time.time() - ports.FRESH - 1
    os.utime(registry / str(port), (old, old))


def test_a_claim_holds_against_other_labs_and_not_against_its_own(tmp_path, own_registry):
    a, b = _lab(tmp_path, "a"), _lab(tmp_path, "b")
    assert ports.claim(41001, a)
    assert not ports.claim(41001, b)  # fresh: a has not recorded it yet
    assert ports.claim(41001, a)      # a again: still a's


def test_an_old_claim_holds_while_its_lab_keeps_the_port(tmp_path, own_registry):
    a = _lab(tmp_path, "a", kept={"event-store-api": 41002})
    b = _lab(tmp_path, "b")
    assert ports.claim(41002, a)
    _age(own_registry, 41002)
    assert not ports.claim(41002, b)  # a's runtime.json keeps it (a later step's service)


@pytest.mark.parametrize("gone", ["moved", "deleted"])
def test_an_old_claim_its_lab_no_longer_keeps_may_be_taken(tmp_path, own_registry, gone):
    a = _lab(tmp_path, "a", kept={"event-store-api": 41003})
    b = _lab(tmp_path, "b")
    assert ports.claim(41003, a)
    _age(own_registry, 41003)
    if gone == "moved":   # a picked another port for it
        (a / "runtime.json").write_text(json.dumps({"ports": {"event-store-api": 41999}}))
    else:                 # a's data directory was reset or deleted
        (a / "runtime.json").unlink()
    assert ports.claim(41003, b)
    assert not ports.claim(41003, a)  # and it is b's now (fresh)


def test_pick_skips_ports_other_labs_keep(tmp_path, own_registry, monkeypatch):
    a, b = _lab(tmp_path, "a"), _lab(tmp_path, "b")
    assert ports.claim(41004, a)
    offered = iter([41004, 41005])  # the kernel offers a's unstarted port first
    monkeypatch.setattr(ports, "kernel_free_port", lambda: next(offered))
    assert ports.pick(b) == 41005


def test_an_unusable_registry_refuses_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setattr(ports, "registry", lambda: blocker / "sub")
    assert ports.claim(41006, _lab(tmp_path, "a"))


def test_release_drops_only_the_owners_claims(tmp_path, own_registry):
    a, b = _lab(tmp_path, "a"), _lab(tmp_path, "b")
    assert ports.claim(41007, a) and ports.claim(41008, a) and ports.claim(41009, b)
    assert ports.release(a) == 2
    assert sorted(p.name for p in own_registry.iterdir()) == ["41009"]
    assert ports.claim(41007, b)
