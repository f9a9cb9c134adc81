"""Fault injection from a notebook: `lab.faults.inject("payment-service", "decline")`.

The participants (user-, order-, inventory-, payment-service) accept faults when started with
`LABKIT_FAULTS=1`: off by default; `lab.up(faults=True)` / `labkit up --faults` (locally) or
manifests/components/faults (cluster) turn it on. When the lab has an admin token, arming a
fault needs it too (`X-Labkit-Admin-Token`; `lab.faults` sends it). Modes:

| mode | effect on the next `times` requests under `path` (default `/api/`) |
|---|---|
| `error` | 503 `injected_fault`, the request is not handled (the saga retries) |
| `delay` | waits `seconds`, then handles it (the saga may time out and compensate) |
| `decline` | payment-service only: the charge is refused, 409 `declined` (a business refusal) |
| `crash` | the process exits before handling it (the saga resumes once it is back) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ecommerce.services.admin import ADMIN_HEADER
from ecommerce.services.registry import PARTICIPANTS
from labkit.ops.refusal import refusal
from labkit.ops.unreachable import unreachable

MODES = ("error", "delay", "decline", "crash")


class FaultError(RuntimeError):
    """A fault could not be set, listed or cleared; the message says why."""


def service_name(service: str) -> str:
    """`payment` or `payment-service` -> `payment-service` (participants only)."""
    name = service if service.endswith("-service") else f"{service}-service"
    if name not in PARTICIPANTS:
        raise FaultError(f"faults exist on the saga participants only: {', '.join(PARTICIPANTS)}; "
                         f"got {service!r}")
    return name


class Faults:
    """Arm, list and clear faults. `url_of(service)` gives a participant's base URL."""

    def __init__(self, url_of: Callable[[str], str], *, timeout: float = 5.0,
                 token: str | None = None) -> None:
        self._url_of, self._timeout = url_of, timeout
        self._headers = {ADMIN_HEADER: token} if token else {}

    def _request(self, service: str, method: str, **kw: Any) -> dict[str, Any]:
        try:
            url = self._url_of(service).rstrip("/") + "/faults"
        except Exception as exc:  # the runtime does not know where it is (not started?)
            raise FaultError(f"no address for {service}: {exc}") from None
        try:
            r = httpx.request(method, url, timeout=self._timeout, headers=self._headers, **kw)
        except httpx.HTTPError as exc:
            raise FaultError(unreachable(service, url, exc)) from None
        if r.status_code == 404:
            raise FaultError(f"{service} has fault injection switched off (LABKIT_FAULTS=1 turns "
                             "it on): run lab.up(faults=True) or `labkit up --faults` (cluster: "
                             "kubectl apply -k manifests/overlays/faults)")
        try:
            body = r.json()
        except ValueError:
            body = {"detail": r.text}
        if r.status_code >= 400:
            raise FaultError(f"{service} refused the fault ({r.status_code}): {refusal(body)}")
        return body

    def inject(self, service: str, mode: str, times: int = 1, seconds: float | None = None,
               path: str | None = None) -> dict[str, Any]:
        """Arm a fault on one participant; returns it as the service stored it."""
        name = service_name(service)
        if mode not in MODES:
            raise FaultError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "decline" and name != "payment-service":
            raise FaultError("mode 'decline' is payment-service's (it refuses charges)")
        if mode == "delay" and seconds is None:
            raise FaultError("mode 'delay' needs seconds, e.g. seconds=2.0")
        body: dict[str, Any] = {"mode": mode, "times": times}
        if seconds is not None:
            body["seconds"] = seconds
        if path is not None:
            body["path"] = path
        return self._request(name, "POST", json=body)

    def clear(self, service: str | None = None) -> dict[str, int]:
        """Disarm every fault of one participant, or of all that are reachable."""
        if service is not None:
            name = service_name(service)
            return {name: int(self._request(name, "DELETE").get("cleared", 0))}
        out: dict[str, int] = {}
        for name in PARTICIPANTS:
            try:
                out[name] = int(self._request(name, "DELETE").get("cleared", 0))
            except FaultError:
                continue  # down (maybe after a crash fault) or faults off: nothing armed there
        return out

    def armed(self) -> list[dict[str, Any]]:
        """Every armed fault of the reachable participants, one row each (with `service`)."""
        rows: list[dict[str, Any]] = []
        for name in PARTICIPANTS:
            try:
                body = self._request(name, "GET")
            except FaultError:
                continue
            rows += [{"service": name, **f} for f in body.get("faults", [])]
        return rows

    def __repr__(self) -> str:
        return "<Faults: inject(service, mode, times=1, seconds=None, path=None), clear(), armed()>"
