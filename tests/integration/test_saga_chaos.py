"""Chaos, bounded for CI: random faults and orchestrator kills against a real local lab, then
every invariant. The full run (`labkit chaos --runs 1000`) is the same code with more runs."""

from __future__ import annotations

import json
import subprocess
import sys

from ecommerce.config import REPO_DIR
from labkit.bench.saga import bench_saga


def test_chaos_30_runs_hold_every_invariant_and_print_json_last() -> None:
    done = subprocess.run([sys.executable, "-m", "labkit.cli", "chaos", "--runs", "30", "--seed", "1",
                           "--json"], capture_output=True, text=True, timeout=240, cwd=REPO_DIR)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"runs", "completed", "compensated", "stuck", "violations", "seconds"} <= set(result)
    assert result["violation_details"] == [] and result["violations"] == 0
    assert result["stuck"] == 0 and result["errors"] == []
    assert result["completed"] + result["compensated"] == 30
    assert result["completed"] > 0 and result["compensated"] > 0
    assert result["restarts"].get("saga-orchestrator", 0) >= 1  # a kill really happened
    assert done.returncode == 0


def test_bench_saga_small() -> None:
    result = bench_saga(sagas=40, concurrency=4)
    assert result["completed"] == 40 and result["errors"] == 0
    assert result["sagas_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["machine_loop_ms"] > 0  # the figures come with the machine's speed
