"""User projections: the users view (`/api/queries/users`) and user stats."""

from __future__ import annotations

from ecommerce.domain import users as u
from ecommerce.domain.events import RecordedEvent
from ecommerce.domain.readmodel import Incr, Merge, Put, Write
from ecommerce.projections.base import Projection

USERS = "users"
USER_STATS = "user_stats"
#: Users created per day live in the summary as `created_on:<YYYY-MM-DD>` counters.
CREATED_ON = "created_on:"
STATS_KEY = "summary"


def project_users(e: RecordedEvent) -> list[Write]:
    t = e.type
    user_id = e.stream_id[5:]  # "user-<id>"
    if t == u.USER_UPDATED:
        d = e.data
        fields = {"updated_at": e.recorded_iso, "version": e.version}
        if "name" in d:
            fields["name"] = d["name"]
        if "email" in d:
            fields["email"] = d["email"]
        return [Merge(USERS, user_id, fields, e.position)]
    if t == u.USER_CREATED:
        d, at = e.data, e.recorded_iso
        return [Put(USERS, user_id, {
            "id": user_id, "name": d["name"], "email": d["email"], "status": "active",
            "tier": d.get("tier", "standard"), "created_at": at, "updated_at": at,
            "version": e.version,
        }, e.position)]
    if t == u.USER_DEACTIVATED:
        return [Merge(USERS, user_id, {"status": "inactive", "updated_at": e.recorded_iso,
                                       "version": e.version}, e.position)]
    return []


def project_user_stats(e: RecordedEvent) -> list[Write]:
    if e.type == u.USER_CREATED:
        day = e.recorded_iso[:10]  # ISO text in UTC: the first 10 characters are the date
        return [Incr(USER_STATS, STATS_KEY, {"total_users": 1, "active_users": 1,
                                             CREATED_ON + day: 1})]
    if e.type == u.USER_DEACTIVATED:
        return [Incr(USER_STATS, STATS_KEY, {"active_users": -1})]
    return []


USERS_VIEW = Projection(
    "users", (USERS,), frozenset(u.USER_EVENTS), project_users,
    "one document per user: id, name, email, status",
)
USER_STATS_VIEW = Projection(
    "user-stats", (USER_STATS,),
    frozenset({u.USER_CREATED, u.USER_DEACTIVATED}), project_user_stats,
    "total and active users, users created per day",
)
