"""Projections (pure), the projector that applies them, and replay."""

from __future__ import annotations

from ecommerce.projections.base import Projection
from ecommerce.projections.orders import ORDERS_VIEW
from ecommerce.projections.sagas import SAGA_STATS_VIEW, SAGAS_VIEW
from ecommerce.projections.users import USER_STATS_VIEW, USERS_VIEW

#: Every projection the lab runs, by name.
PROJECTIONS: dict[str, Projection] = {p.name: p for p in (
    USERS_VIEW, USER_STATS_VIEW, SAGAS_VIEW, SAGA_STATS_VIEW, ORDERS_VIEW)}


def get_projections(names: list[str] | None = None) -> list[Projection]:
    """The named projections (all when None); an unknown name says which names exist."""
    if not names:
        return list(PROJECTIONS.values())
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise KeyError(
            f"unknown projection(s) {', '.join(unknown)}; known: {', '.join(PROJECTIONS)}"
        )
    return [PROJECTIONS[n] for n in names]


__all__ = ["PROJECTIONS", "Projection", "get_projections"]
