"""Event store and read store: one interface each, embedded (SQLite) and server-backed."""

from ecommerce.store.base import (
    ANY,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    StoreUnavailableError,
    parse_expected_version,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "ConcurrencyError",
    "DuplicateEventError",
    "EventStore",
    "StoreUnavailableError",
    "parse_expected_version",
]
