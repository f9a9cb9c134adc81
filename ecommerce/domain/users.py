"""Users: the Lab 1 aggregate, event-sourced in stream `user-<id>`.

Commands are validated against the current state (folded from the stream) and produce events;
the state is only ever changed by applying events.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from ecommerce.domain.events import NewEvent, RecordedEvent, UnreadableEventError, UpcasterRegistry

USER_CREATED = "UserCreated"
USER_UPDATED = "UserUpdated"
USER_DEACTIVATED = "UserDeactivated"
USER_EVENTS = (USER_CREATED, USER_UPDATED, USER_DEACTIVATED)

#: The current schema version of UserCreated. v1 had a single `name`; see `upcast_user_created_v1`.
USER_CREATED_VERSION = 2

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserRuleError(ValueError):
    """A command breaks a user rule (unknown user, already inactive, bad email...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stream_id(user_id: str) -> str:
    return f"user-{user_id}"


@dataclass(frozen=True)
class User:
    id: str
    name: str = ""
    email: str = ""
    status: str = "active"
    tier: str = "standard"
    version: int = 0
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "status": self.status,
                "tier": self.tier, "version": self.version, "created_at": self.created_at,
                "updated_at": self.updated_at}


def apply(user: User, event: RecordedEvent) -> User:
    at = event.recorded_iso
    d = event.data
    if event.type == USER_CREATED:
        return replace(user, name=d["name"], email=d["email"], status="active",
                       tier=d.get("tier", "standard"), version=event.version, created_at=at,
                       updated_at=at)
    if event.type == USER_UPDATED:
        return replace(user, name=d.get("name", user.name), email=d.get("email", user.email),
                       version=event.version, updated_at=at)
    if event.type == USER_DEACTIVATED:
        return replace(user, status="inactive", version=event.version, updated_at=at)
    return replace(user, version=event.version)


def fold(user_id: str, events: list[RecordedEvent]) -> User:
    """Rebuild a user's state from its events (what event sourcing means)."""
    user = User(user_id)
    for e in events:
        try:
            user = apply(user, e)
        except Exception as exc:  # a shape this code does not know: say which event
            raise UnreadableEventError(e, exc) from exc
    return user


def _clean_email(email: object) -> str:
    if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
        raise UserRuleError("invalid_email", f"email {email!r} is not a valid address")
    return email.strip().lower()


#: Text-direction overrides and isolates: they make a name display as something it is not.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _clean_name(name: object) -> str:
    if (not isinstance(name, str) or not name.strip() or len(name) > 200
            or any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in name)):
        raise UserRuleError("invalid_name", "name must be 1 to 200 characters, not blank, "
                                            "without control or text-direction characters")
    return name.strip()


def create(user: User, name: object, email: object, tier: str = "standard") -> NewEvent:
    if user.exists:
        raise UserRuleError("already_exists", f"user {user.id} already exists")
    if tier not in ("standard", "premium"):
        raise UserRuleError("invalid_tier", "tier must be 'standard' or 'premium'")
    return NewEvent(USER_CREATED, {"user_id": user.id, "name": _clean_name(name),
                                   "email": _clean_email(email), "tier": tier},
                    schema_version=USER_CREATED_VERSION)


def update(user: User, name: object = None, email: object = None) -> NewEvent:
    if not user.exists:
        raise UserRuleError("not_found", f"user {user.id} does not exist")
    if user.status != "active":
        raise UserRuleError("inactive", f"user {user.id} is inactive and cannot be updated")
    data: dict[str, Any] = {"user_id": user.id}
    if name is not None:
        data["name"] = _clean_name(name)
    if email is not None:
        data["email"] = _clean_email(email)
    if len(data) == 1:
        raise UserRuleError("nothing_to_update", "give a new name or email")
    return NewEvent(USER_UPDATED, data)


def deactivate(user: User, reason: str = "") -> NewEvent:
    if not user.exists:
        raise UserRuleError("not_found", f"user {user.id} does not exist")
    if user.status != "active":
        raise UserRuleError("already_inactive", f"user {user.id} is already inactive")
    return NewEvent(USER_DEACTIVATED, {"user_id": user.id, "reason": str(reason)[:500]})


def upcast_user_created_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: v2 added the customer `tier`; every v1 user was a standard customer."""
    return {**data, "tier": data.get("tier", "standard")}


def register_upcasters(registry: UpcasterRegistry) -> None:
    registry.add(USER_CREATED, 1, upcast_user_created_v1)
