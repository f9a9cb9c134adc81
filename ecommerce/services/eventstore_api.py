"""event-store-api: browse the log (global order and single streams) and start a replay."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from ecommerce.config import Settings
from ecommerce.projections import all_projections, get_projections
from ecommerce.projections.projector import ProjectionError
from ecommerce.projections.replay import replay
from ecommerce.services.app import ApiError, Limit, make_app, read_store_check, serve
from ecommerce.store.base import EventStore
from ecommerce.store.factory import open_event_store, open_read_store
from ecommerce.store.read_base import ReadStore

After = Annotated[int, Query(ge=0, le=2**62, description="positions after this one")]
StreamId = Annotated[str | None, Query(min_length=1, max_length=200,
                                       description="exact stream id, e.g. user-42")]
Category = Annotated[str | None, Query(min_length=1, max_length=100,
                                       description="stream prefix, e.g. user")]
EventType = Annotated[str | None, Query(min_length=1, max_length=200)]
FromVersion = Annotated[int, Query(ge=0, le=2**31)]
Raw = Annotated[bool, Query(description="as stored: no upcasting to the current schema version")]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    projections: list[str] | None = Field(None, max_length=50)


def create_app(settings: Settings, event_store: EventStore | None = None,
               reads: ReadStore | None = None) -> FastAPI:
    es = event_store or open_event_store(settings)
    rs = reads or open_read_store(settings)
    app = make_app("event-store-api", settings,
                   ready_checks={"event_store": es.last_position,
                                 "read_store": read_store_check(rs)},
                   description="The append-only log: global order, streams, replay.")

    @app.get("/api/events", tags=["events"])
    def events(after: After = 0, limit: Limit = 100, stream: StreamId = None,
               category: Category = None, type: EventType = None) -> dict[str, Any]:
        types = [type] if type else None
        if stream:
            found = [e for e in es.read_stream(stream) if e.position > after
                     and (not types or e.type in types)][:limit]
        else:
            prefix = category if category is None or category.endswith("-") else category + "-"
            found = es.read_all(after, limit, stream_prefix=prefix, types=types)
        return {"events": [e.as_dict() for e in found],
                "next_after": found[-1].position if found else after,
                "last_position": es.last_position()}

    @app.get("/api/events/streams/{stream_id}", tags=["events"])
    def stream(stream_id: str, from_version: FromVersion = 0, raw: Raw = False) -> dict[str, Any]:
        # raw: what the log holds, on any backend (the notebooks' look behind the upcasters).
        found = (es.read_stream_as_stored(stream_id, from_version) if raw
                 else es.read_stream(stream_id, from_version))
        version = es.stream_version(stream_id)
        if version == 0:
            raise ApiError(404, "not_found", f"stream {stream_id!r} does not exist")
        return {"stream_id": stream_id, "version": version, "events": [e.as_dict() for e in found]}

    @app.get("/api/events/stats", tags=["events"])
    def stats() -> dict[str, Any]:
        out = es.stats()
        out.pop("location", None)
        return out

    @app.post("/api/events/replay", tags=["events"],
              summary="Rebuild read models from position 0 beside the live ones, then swap")
    def start_replay(body: ReplayRequest | None = None) -> dict[str, Any]:
        names = body.projections if body else None
        try:
            chosen = get_projections(names)
        except KeyError as exc:
            raise ApiError(422, "unknown_projection", str(exc.args[0]),
                           known=sorted(all_projections())) from None
        try:
            result = replay(es, rs, chosen, progress=False)
        except ProjectionError as exc:  # an event a projection cannot apply: say which
            raise ApiError(409, "replay_stopped", str(exc), position=exc.position) from None
        return {"replay_id": f"replay-{uuid.uuid4().hex[:8]}", "status": "completed",
                "events_count": result.events, "seconds": result.seconds,
                "events_per_s": result.events_per_s, "projections": result.projections,
                "position": result.position}

    return app


if __name__ == "__main__":
    serve("event-store-api", create_app)
