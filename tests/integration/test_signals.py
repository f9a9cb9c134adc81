"""Long-running processes stop cleanly (exit 0) on SIGTERM, what Kubernetes and `labkit down`
send, wherever in their poll loop it lands.

(The deadlock ecommerce.signals avoids, a handler calling `Event.set()` while the main thread held
the event's lock, is too narrow a race to reproduce on demand; this checks the behaviour around
it: the signal stops the loop and the process exits by itself.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.waiting import wait_until


@pytest.mark.parametrize("command", [
    ["ecommerce.projections.processor", "--follow", "--poll", "0.0005"],
    ["ecommerce.saga", "run", "--follow", "--poll", "0.0005"],
])
def test_sigterm_always_stops_the_process(tmp_path, command) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update({"LABKIT_DATA_DIR": str(tmp_path), "LABKIT_EVENTS_DB": str(tmp_path / "e.db"),
                "LABKIT_READ_DB": str(tmp_path / "r.db"), "PYTHONUNBUFFERED": "1"})
    rnd = random.Random(5)
    for i in range(3):
        log = tmp_path / f"run-{i}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", *command], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            # Started (its handlers are installed before it says it follows), then somewhere
            # in its poll loop.
            wait_until(lambda log=log: '"msg": "following' in log.read_text(errors="replace"),
                       what=f"{command[0]} to start following")
            time.sleep(rnd.uniform(0, 0.2))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
