"""`labkit up` is all or nothing: a failed start leaves no process behind, `labkit down` finds
everything, the next `up` works; a data directory that cannot be used gets one sentence.

Each test fails on the original runtime: it spawned services one by one and recorded them only
at the end, so a taken port orphaned the services started before it (`down` said "nothing was
running" and the next `up` failed on their ports), a service that died at start-up left the
others running, and a bad data directory raised a raw OSError with a traceback.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from labkit.runtime import local
from labkit.runtime.local import LocalRuntime, RuntimeErrorWithHint
from tests.integration.labs import lab_settings

SERVICES = ["command-service", "query-service", "event-store-api", "event-processor"]


def lab_processes(data_dir: Path) -> list[int]:
    """Every live process on this machine started for this data directory."""
    found = []
    for p in psutil.process_iter(["pid", "environ", "status"]):
        env = p.info.get("environ") or {}
        if env.get("LABKIT_DATA_DIR") == str(data_dir) and \
                p.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(p.info["pid"])
    return found


def test_a_taken_port_starts_nothing_and_the_next_up_works(tmp_path: Path) -> None:
    # The gateway starts last, and its port is the one a lab cannot move off (8080 unless
    # LABKIT_GATEWAY_PORT says otherwise; a kept service port is simply chosen again when
    # nothing of the lab runs: test_local_runtime).
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    rt = LocalRuntime(lab_settings(tmp_path), [*SERVICES, "gateway"], gateway_port=port)
    try:
        with pytest.raises(RuntimeErrorWithHint, match=f"port {port} for the gateway is "
                                                       "taken.*nothing was started"):
            rt.up(progress=False)
        assert lab_processes(tmp_path) == [], "a failed up left processes behind"
        assert rt.down() == []
    finally:
        blocker.close()
        rt.down()  # whatever an unexpected success started (a test run must leave nothing)
    try:
        rows = {r["service"]: r["status"] for r in rt.up(progress=False)}
        assert rows == {"command-service": "ready", "query-service": "ready",
                        "event-store-api": "ready", "event-processor": "ready",
                        "gateway": "ready"}
    finally:
        rt.down()
    assert lab_processes(tmp_path) == []


def test_a_process_that_dies_during_up_takes_the_others_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = local.launch_specs

    def one_dies(names=None):
        specs = real(names)
        specs["query-service"] = replace(
            specs["query-service"],
            command=[sys.executable, "-c", "print('query-service: broken on purpose'); exit(3)"])
        return specs

    rt = LocalRuntime(lab_settings(tmp_path), SERVICES)
    monkeypatch.setattr(local, "launch_specs", one_dies)
    with pytest.raises(RuntimeErrorWithHint, match="query-service exited during start-up"):
        rt.up(progress=False)
    assert lab_processes(tmp_path) == [], "the services started with it are still running"
    assert all(r["status"] == "not started" for r in rt.status())

    monkeypatch.setattr(local, "launch_specs", real)
    try:
        assert {r["status"] for r in rt.up(progress=False)} == {"ready"}  # followers too
    finally:
        rt.down()


def test_up_records_each_process_as_it_spawns_it(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted while starting (Ctrl-C in the notebook, a crash of `up` itself): everything
    spawned so far is on record, so `down` finds it even if `up` could not clean up."""
    rt = LocalRuntime(lab_settings(tmp_path), SERVICES)
    spawn = rt._spawn
    seen: list[set[str]] = []

    def spawn_and_look(spec, ports, *args, **kwargs):
        seen.append(set(LocalRuntime(rt.settings, SERVICES)._load()))
        return spawn(spec, ports, *args, **kwargs)

    monkeypatch.setattr(rt, "_spawn", spawn_and_look)
    monkeypatch.setattr(rt, "_stop", lambda names, timeout=10.0: [])  # `up` cannot clean up
    monkeypatch.setattr(rt, "wait_ready", lambda *a, **kw: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        rt.up(progress=False)
    assert seen == [set(), {"command-service"}, {"command-service", "query-service"},
                    {"command-service", "query-service", "event-store-api"}]
    other_shell = LocalRuntime(lab_settings(tmp_path), SERVICES)
    assert sorted(other_shell.down()) == sorted(SERVICES)
    assert lab_processes(tmp_path) == []


def _one_sentence(text: str, data_dir: Path) -> None:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert str(data_dir) in lines[0] and "LABKIT_DATA_DIR" in lines[0], text


def _bad_dirs(tmp_path: Path) -> list[tuple[str, Path]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    dirs = [("not a directory", a_file), ("under a file", a_file / "lab")]
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder only stops other users
        ro = tmp_path / "read-only"
        ro.mkdir(mode=0o500)
        dirs.append(("read-only", ro))
    return dirs


def test_a_bad_data_dir_gets_one_sentence_in_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.cli import main

    for _, bad in _bad_dirs(tmp_path):
        monkeypatch.setenv("LABKIT_DATA_DIR", str(bad))
        for command in (["up", "--quiet"], ["status"], ["down"]):
            capsys.readouterr()
            assert main(command) == 1, command
            out = capsys.readouterr()
            _one_sentence(out.err, bad)


def test_a_bad_data_dir_gets_one_sentence_from_lab_up(tmp_path: Path) -> None:
    from labkit.lab import Lab

    for _, bad in _bad_dirs(tmp_path):
        lab = Lab(lab_settings(bad))
        with pytest.raises(RuntimeErrorWithHint) as info:
            lab.up(progress=False)
        _one_sentence(str(info.value), bad)
        assert info.value.__cause__ is None and info.value.__suppress_context__
