"""`labkit bench idle`: CPU per process from psutil or /proc, and a clear refusal without a lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from labkit.bench import idle
from labkit.cli import main as cli_main


def burn(seconds: float = 0.3) -> None:
    end = psutil.Process().cpu_times().user + seconds
    while psutil.Process().cpu_times().user < end:
        pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_proc_stat_and_psutil_agree_on_this_process() -> None:
    burn()
    a = idle._proc_stat_seconds(os.getpid())
    b = idle.cpu_seconds(os.getpid())
    assert a is not None and b is not None
    assert a >= 0.3 and abs(a - b) < 0.1  # clock ticks vs psutil's reading of the same file


def test_a_gone_process_has_no_figure() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert idle.cpu_seconds(p.pid) is None
    assert idle._proc_stat_seconds(p.pid) is None


def test_measure_tells_a_busy_process_from_a_sleeping_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    asleep = subprocess.Popen([sys.executable, "-c", "import time; print('zz', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert asleep.stdout is not None and asleep.stdout.readline() == "zz\n"  # started up
        rt = SimpleNamespace(
            settings=SimpleNamespace(pg_url=None),
            status=lambda: [{"service": "busy", "pid": busy.pid},
                            {"service": "asleep", "pid": asleep.pid},
                            {"service": "not started", "pid": None}])
        out = idle.measure(rt, seconds=1.0)  # type: ignore[arg-type]
    finally:
        busy.kill()
        asleep.kill()
    per = out["per_process"]
    assert set(per) == {"busy", "asleep"} and out["processes"] == 2
    assert per["busy"] > per["asleep"]
    assert per["asleep"] < 1.0
    assert out["cpu_percent_of_core"] == pytest.approx(per["busy"] + per["asleep"], abs=0.01)
    assert out["database"] is None and out["backend"] == "sqlite"


def test_idle_on_a_data_dir_without_a_lab_says_what_to_do(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    code = cli_main(["bench", "idle", "--running", "--seconds", "0.1", "--settle", "0"])
    assert code != 0
    assert "no lab process is running here" in capsys.readouterr().err
