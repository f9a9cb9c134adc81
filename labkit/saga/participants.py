"""Calling the saga's participants over HTTP: one attempt, one outcome.

Every request carries `Idempotency-Key: <saga id>:<action>`, so sending it again after a
timeout or a crash returns the first answer and changes nothing (docs/api.md). What the answer
means (success, business refusal, transient failure) is decided by `labkit.domain.saga.classify`.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from labkit.config import Settings
from labkit.domain import saga as s
from labkit.services.registry import PARTICIPANTS


def participant_urls(settings: Settings | None = None) -> dict[str, str]:
    """Base URL of each participant from LABKIT_<SERVICE>_URL (cluster DNS names otherwise)."""
    settings = settings or Settings.from_env()
    return {name: settings.peer_url(name) for name in PARTICIPANTS}


class HttpParticipants:
    """Sends one saga action to its participant and classifies the answer."""

    def __init__(self, urls: Mapping[str, str], *, timeout: float = 1.0,
                 client: httpx.Client | None = None, max_connections: int = 64) -> None:
        missing = [p for p in PARTICIPANTS if p not in urls]
        if missing:
            raise ValueError(f"no URL for participant(s) {', '.join(missing)}")
        self.urls = {k: v.rstrip("/") for k, v in urls.items()}
        self.timeout = timeout
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    def call(self, action: str, kind: s.Kind, saga: s.SagaState) -> s.Outcome:
        req = s.request_for(action, saga)
        url = self.urls[req.service] + req.path
        try:
            response = self.client.request(
                req.method, url, json=req.body,
                headers={"Idempotency-Key": req.idempotency_key}, timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            return s.Transient(f"timeout after {self.timeout}s ({type(exc).__name__}) "
                               f"calling {req.service}")
        except httpx.TransportError as exc:
            return s.Transient(f"{type(exc).__name__} calling {req.service}: {exc}"[:300])
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:300]}
        return s.classify(action, kind, response.status_code, body)

    def close(self) -> None:
        if self._own_client:
            self.client.close()
