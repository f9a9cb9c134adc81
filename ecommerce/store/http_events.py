"""A read-only event store over event-store-api's HTTP API.

Cluster mode uses it where a notebook cannot (and a student should not) reach PostgreSQL: the
saga API reads saga streams through event-store-api and starts sagas through command-service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ecommerce.domain.events import NewEvent, RecordedEvent, UpcasterRegistry
from ecommerce.store.base import AppendResult, EventStore, ExpectedVersion, StoreUnavailableError


class ReadOnlyStoreError(RuntimeError):
    """Writes go through the services (command-service), never straight to the log."""


def _event(d: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(d["event_id"], d["stream_id"], d["version"], d["position"],
                         d["event_type"], d["schema_version"], d["data"], d["metadata"],
                         d["recorded_at"])


class HttpEventStore(EventStore):
    backend = "http"

    def __init__(self, base_url: str, *, client: httpx.Client | None = None,
                 registry: UpcasterRegistry | None = None) -> None:
        super().__init__(registry)
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(base_url=self.base_url, timeout=30.0)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(
                f"event-store-api at {self.base_url} is not reachable ({exc}); is the lab up "
                "(lab.status())?") from None

    def append(self, stream_id: str, events: Sequence[NewEvent],
               expected_version: ExpectedVersion) -> AppendResult:
        raise ReadOnlyStoreError(
            "this event store is read-only (event-store-api); send a command to "
            "command-service instead, e.g. lab.command('place-order', ...)")

    def _read_stream(self, stream_id: str, from_version: int) -> list[RecordedEvent]:
        r = self._get(f"/api/events/streams/{stream_id}", {"from_version": from_version})
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return [_event(d) for d in r.json()["events"]]

    def _read_all(self, after_position: int, limit: int, stream_prefix: str | None,
                  types: Sequence[str] | None) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        kinds: list[str | None] = list(types) if types else [None]
        for t in kinds:  # the API filters one type per call
            params: dict[str, Any] = {"after": after_position, "limit": min(limit, 1000)}
            if stream_prefix:
                params["category"] = stream_prefix
            if t:
                params["type"] = t
            r = self._get("/api/events", params)
            r.raise_for_status()
            out += [_event(d) for d in r.json()["events"]]
        out.sort(key=lambda e: e.position)
        return out[:limit]

    def stream_version(self, stream_id: str) -> int:
        r = self._get(f"/api/events/streams/{stream_id}", {"from_version": 2**31})
        if r.status_code == 404:
            return 0
        r.raise_for_status()
        return int(r.json()["version"])

    def last_position(self) -> int:
        r = self._get("/api/events", {"limit": 1, "after": 2**62})
        r.raise_for_status()
        return int(r.json()["last_position"])

    def count_events(self, after_position: int = 0, upto_position: int | None = None) -> int:
        count, after = 0, after_position
        while True:
            page = self.read_all(after, 1000)
            page = [e for e in page if upto_position is None or e.position <= upto_position]
            count += len(page)
            if len(page) < 1000:
                return count
            after = page[-1].position

    def log_id(self) -> str:
        return str(self.stats().get("log_id", ""))

    def stats(self) -> dict[str, object]:
        r = self._get("/api/events/stats")
        r.raise_for_status()
        stats: dict[str, object] = r.json()
        return stats

    def wipe(self) -> None:
        raise ReadOnlyStoreError("event-store-api does not delete events: the log is append-only")

    def close(self) -> None:
        self.client.close()
