"""Probes for the followers (processes that serve no API): a heartbeat, served over HTTP.

The saga orchestrator (`run --follow`) and the event processor (`--follow`) call `beat()` on
every turn of their loop: after a poll that reached the event store (`ok=True`), or after one
that failed (`ok=False` and why). A small HTTP server in a daemon thread answers the kubelet's
probes from that, at no cost while nobody asks:

- `GET /healthz`: 200 while the loop has beaten within `stale_after` seconds; 503 when it has
  not (the loop hangs: a deadlock, a call that never returns). The liveness probe then fails
  and the kubelet restarts the container.
- `GET /readyz`: 200 when the loop is alive and its last poll reached the event store; 503 with
  the reason otherwise (`{"checks": {"follow loop": ..., "event store": ...}}`, the services'
  shape, so `labkit status` shows it in the DETAIL column).

A follower's loop waits at most a few seconds between turns (`ecommerce.store.wakeup`), so a
healthy one beats far more often than `stale_after`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

#: A loop that has not beaten for this long is reported hung (liveness fails).
STALE_AFTER = 30.0
#: The readiness check a failed turn is reported under unless it names another.
STORE_CHECK = "event store"


class Heartbeat:
    """The follower loop's last turn: when, and whether it reached the event store."""

    def __init__(self, service: str, stale_after: float = STALE_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service, self.stale_after, self.clock = service, stale_after, clock
        self._at = clock()
        self._ok = False
        self._detail = "starting: the first poll of the event store has not returned yet"
        self._check = STORE_CHECK

    def beat(self, ok: bool = True, detail: str = "", check: str = "") -> None:
        """A turn of the loop; not `ok`: what failed, and which `check` it is (default the
        event store; the processor says "projections" when a projection failed on an event)."""
        self._at, self._ok, self._detail = self.clock(), ok, detail
        self._check = check or STORE_CHECK

    def age(self) -> float:
        return max(0.0, self.clock() - self._at)

    def alive(self) -> bool:
        return self.age() <= self.stale_after

    def health(self) -> tuple[int, dict[str, Any]]:
        age = round(self.age(), 1)
        if self.alive():
            return 200, {"status": "ok", "service": self.service, "last_beat_s": age}
        return 503, {"status": "hung", "service": self.service, "last_beat_s": age,
                     "detail": f"the follow loop has not turned for {age:.0f} s (limit "
                               f"{self.stale_after:.0f} s): it hangs; restart the process"}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        code, live = self.health()
        checks = {"follow loop": "ok" if code == 200 else live["detail"],
                  STORE_CHECK: "ok" if self._ok or self._check != STORE_CHECK else self._detail}
        if not self._ok and self._check != STORE_CHECK:
            checks[self._check] = self._detail
        ready = code == 200 and self._ok
        return (200 if ready else 503), {"status": "ready" if ready else "not ready",
                                         "service": self.service, "checks": checks}


class _Handler(BaseHTTPRequestHandler):
    heartbeat: Heartbeat

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            code, body = self.heartbeat.health()
        elif path == "/readyz":
            code, body = self.heartbeat.readiness()
        else:
            code, body = 404, {"detail": f"{path} not found: this process serves only /healthz "
                                         "and /readyz", "reason": "not_found"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # probes are not worth a log line
        pass


class HealthServer:
    """Serve a heartbeat's /healthz and /readyz on host:port from a daemon thread."""

    def __init__(self, heartbeat: Heartbeat, host: str = "0.0.0.0", port: int = 8080) -> None:
        handler = type("Handler", (_Handler,), {"heartbeat": heartbeat})
        self.server = HTTPServer((host, port), handler)
        self.port = self.server.server_address[1]
        # poll_interval only bounds how fast shutdown() returns: one wake-up a second, idle.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(1.0,),
                                       name="health", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_probes(heartbeat: Heartbeat) -> HealthServer | None:
    """Serve the probes on LABKIT_HOST:LABKIT_PORT if LABKIT_PORT is set (the container image and
    the local runtime set it), else None: a follower started by hand needs no port."""
    import os

    port = os.environ.get("LABKIT_PORT", "").strip()
    if not port:
        return None
    if not port.isdigit():
        raise SystemExit(f"LABKIT_PORT must be a port number; got {port!r}")
    host = os.environ.get("LABKIT_HOST", "").strip() or "0.0.0.0"
    try:
        return HealthServer(heartbeat, host, int(port))
    except OSError as exc:
        raise SystemExit(f"cannot serve the probes on {host}:{port} ({exc.strerror}); set "
                         "LABKIT_PORT to a free port") from None
