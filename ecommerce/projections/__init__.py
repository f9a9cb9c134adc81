"""Projections (pure), the projector that applies them, and replay."""

from __future__ import annotations

from ecommerce import plugins
from ecommerce.projections.base import Projection
from ecommerce.projections.orders import ORDERS_VIEW
from ecommerce.projections.sagas import SAGA_STATS_VIEW, SAGAS_VIEW
from ecommerce.projections.users import USER_STATS_VIEW, USERS_VIEW

#: The lab's own projections, by name.
PROJECTIONS: dict[str, Projection] = {p.name: p for p in (
    USERS_VIEW, USER_STATS_VIEW, SAGAS_VIEW, SAGA_STATS_VIEW, ORDERS_VIEW)}
plugins.BUILT_IN.update({p.name: p.collections for p in PROJECTIONS.values()})


def all_projections() -> dict[str, Projection]:
    """The lab's projections and those the loaded plugins added (`ecommerce.plugins`)."""
    return {**plugins.PROJECTIONS, **PROJECTIONS}


def get_projections(names: list[str] | None = None) -> list[Projection]:
    """The named projections (all when None); an unknown name says which names exist."""
    known = all_projections()
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(
            f"unknown projection(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return [known[n] for n in names]


__all__ = ["PROJECTIONS", "Projection", "all_projections", "get_projections"]
