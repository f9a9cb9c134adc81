"""query-service: the CQRS read side. Answers only from the read model (materialized views
built by the event processor), never from the event store.

Every answer says how fresh it is: `last_updated` (when the projection last committed) and
`checkpoint` (the last global log position the projection has applied). A client that just
sent a command can compare `checkpoint` with the command's `position`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query

from ecommerce import plugins
from ecommerce.config import Settings
from ecommerce.projections import all_projections
from ecommerce.projections import users as pu
from ecommerce.services.app import (
    ApiError,
    Limit,
    Offset,
    make_app,
    not_found,
    read_store_check,
    serve,
)
from ecommerce.store.factory import open_read_store
from ecommerce.store.read_base import ReadStore

SAGAS, ORDERS, ORDER_STATS = "sagas", "orders", "order_stats"
UserStatus = Annotated[str | None, Query(pattern="^(active|inactive)$")]


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_key"}


def create_app(settings: Settings, store: ReadStore | None = None) -> FastAPI:
    reads = store or open_read_store(settings)
    app = make_app("query-service", settings, ready_checks={"read_store": read_store_check(reads)},
                   description="CQRS read side: materialized views only.")

    def freshness(projection: str) -> dict[str, Any]:
        cp = reads.checkpoints().get(projection)
        return {"last_updated": cp.updated_at if cp else None,
                "checkpoint": cp.position if cp else 0}

    def view(collection: str, projection: str, limit: int, offset: int,
             status: str | None = None) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        meta = freshness(projection)  # read first: the documents are at least this fresh
        if status is None:
            docs = [_strip(d) for d in reads.documents(collection, limit, offset)]
            return docs, reads.count(collection), meta
        matching = [_strip(d) for d in reads.documents(collection) if d.get("status") == status]
        return matching[offset : offset + limit], len(matching), meta

    @app.get("/api/queries/users", tags=["queries"])
    def users(limit: Limit = 100, offset: Offset = 0, status: UserStatus = None) -> dict[str, Any]:
        docs, total, meta = view(pu.USERS, pu.USERS_VIEW.name, limit, offset, status)
        return {"users": docs, "total": total, "source": "materialized_view", **meta}

    @app.get("/api/queries/users/{user_id}", tags=["queries"])
    def user(user_id: str) -> dict[str, Any]:
        meta = freshness(pu.USERS_VIEW.name)
        doc = reads.get(pu.USERS, user_id)
        if doc is None:
            raise not_found("user", user_id)
        return {**doc, "source": "materialized_view", **meta}

    @app.get("/api/queries/user-stats", tags=["queries"])
    def user_stats() -> dict[str, Any]:
        meta = freshness(pu.USER_STATS_VIEW.name)
        summary = reads.get(pu.USER_STATS, pu.STATS_KEY) or {}
        today = pu.CREATED_ON + datetime.now(UTC).date().isoformat()
        return {"total_users": summary.get("total_users", 0),
                "active_users": summary.get("active_users", 0),
                "new_users_today": summary.get(today, 0),
                "source": "aggregated_view", **meta}

    @app.get("/api/queries/sagas", tags=["queries"])
    def sagas(limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        docs, total, meta = view(SAGAS, "sagas", limit, offset)
        return {"sagas": docs, "total": total, "source": "materialized_view", **meta}

    @app.get("/api/queries/sagas/{saga_id}", tags=["queries"])
    def saga(saga_id: str) -> dict[str, Any]:
        meta = freshness("sagas")
        doc = reads.get(SAGAS, saga_id)
        if doc is None:
            raise not_found("saga", saga_id)
        return {**doc, "source": "materialized_view", **meta}

    @app.get("/api/queries/orders", tags=["queries"])
    def orders(limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        docs, total, meta = view(ORDERS, "orders", limit, offset)
        stats = reads.get(ORDER_STATS, "summary") or {}
        return {"orders": docs, "total": total, "by_status": stats,
                "source": "materialized_view", **meta}

    def plugin_view(name: str) -> Any:
        from ecommerce.projections import all_projections

        known = all_projections()
        p = known.get(name)
        if p is None or name not in plugins.PROJECTIONS:
            added = sorted(plugins.PROJECTIONS)
            raise ApiError(404, "not_found", f"no view {name!r} was added by a plugin; added: "
                           f"{', '.join(added) or 'none (lab.deploy_code adds one)'}")
        return p

    @app.get("/api/queries/views/{name}", tags=["queries"],
             summary="A read model added by a plugin: every collection's documents")
    def plugin_docs(name: str, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        p = plugin_view(name)
        meta = freshness(name)
        docs = {c: [{"key": d.get("_key"), **_strip(d)} for d in reads.documents(c, limit, offset)]
                for c in p.collections}
        return {"view": name, "collections": docs,
                "total": {c: reads.count(c) for c in p.collections},
                "source": "materialized_view", **meta}

    @app.get("/api/queries/views/{name}/{key}", tags=["queries"],
             summary="One document of a plugin's read model (its first collection)")
    def plugin_doc(name: str, key: str) -> dict[str, Any]:
        p = plugin_view(name)
        meta = freshness(name)
        doc = reads.get(p.collections[0], key)
        if doc is None:
            raise not_found(f"{name} document", key)
        return {**_strip(doc), "source": "materialized_view", **meta}

    @app.get("/api/queries/checkpoints", tags=["queries"],
             summary="Every projection's checkpoint: how far the read side has caught up")
    def checkpoints() -> dict[str, Any]:
        """`checkpoints`: the projections the lab runs (its own and the deployed plugins').
        `paused`: those of removed plugins. Their checkpoints and documents stay in the read
        store, so a plugin deployed again goes on from where it stopped, but nothing advances
        them now: they are not "behind"."""
        running = all_projections()
        out: dict[str, Any] = {"checkpoints": {}, "paused": {}}
        for name, cp in reads.checkpoints().items():
            out["checkpoints" if name in running else "paused"][name] = {
                "position": cp.position, "last_updated": cp.updated_at}
        return out

    return app


if __name__ == "__main__":
    serve("query-service", create_app)
