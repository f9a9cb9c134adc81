"""The upcasters of every event type the lab knows, in one registry."""

from __future__ import annotations

from functools import cache

from ecommerce.domain import users
from ecommerce.domain.events import UpcasterRegistry, upcasters


@cache
def default_upcasters() -> UpcasterRegistry:
    """The shared registry with the domain's upcasters registered (once)."""
    users.register_upcasters(upcasters)
    return upcasters
