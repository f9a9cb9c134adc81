"""Stop a long-running process cleanly on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).

A signal handler runs in the main thread, between two bytecodes, possibly while that thread is
inside `threading.Event.wait()` holding the event's internal lock. Calling `event.set()` right
there can deadlock the process forever (it did: a processor stuck in a futex after SIGTERM).
So the handler only starts a thread, and that thread sets the event once the lock is free.
"""

from __future__ import annotations

import signal
import threading


def stop_on_signals(stop: threading.Event,
                    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=stop.set, name=f"stop-on-{signum}", daemon=True).start()

    for sig in signals:
        signal.signal(sig, handler)
