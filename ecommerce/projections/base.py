"""A projection: a name, the collections it owns, and a pure function event -> writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Write


@dataclass(frozen=True)
class Projection:
    name: str
    collections: tuple[str, ...]
    #: Event types it reacts to; every other event only moves its checkpoint.
    event_types: frozenset[str]
    project: Callable[[RecordedEvent], list[Write]]
    description: str = ""
