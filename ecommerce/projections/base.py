"""A projection: a name, the collections it owns, and a table of pure handlers event -> writes.

The table (event type -> handler) is the one place that says which events a projection reacts
to: `event_types` is its keys, so a handler cannot exist without being called, and an event
type cannot be listed without a handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Write

#: One event type's effect on a read model: a pure function of the event.
Handler = Callable[[RecordedEvent], list[Write]]


@dataclass(frozen=True)
class Projection:
    name: str
    collections: tuple[str, ...]
    #: Event type -> handler; every other event only moves the projection's checkpoint.
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a projection needs a name (a non-empty string)")
        if not self.collections:
            raise ValueError(f"projection {self.name!r} needs at least one collection it writes")
        if not self.handlers:
            raise ValueError(f"projection {self.name!r} needs handlers: {{event type: function}}")
        bad = [t for t, h in self.handlers.items() if not callable(h)]
        if bad:
            raise ValueError(f"projection {self.name!r}: the handler of {', '.join(bad)} is not "
                             "a function")
        object.__setattr__(self, "handlers", MappingProxyType(dict(self.handlers)))

    @property
    def event_types(self) -> frozenset[str]:
        """The event types it reacts to: the keys of its handler table."""
        return frozenset(self.handlers)

    def project(self, e: RecordedEvent) -> list[Write]:
        """The writes one event makes (none for a type without a handler)."""
        handler = self.handlers.get(e.type)
        return handler(e) if handler is not None else []
