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


def _user_created(e: RecordedEvent) -> list[Write]:
    d, at, uid = e.data, e.recorded_iso, e.stream_id[5:]  # "user-<id>"
    return [Put(USERS, uid, {
        "id": uid, "name": d["name"], "email": d["email"], "status": "active",
        "tier": d.get("tier", "standard"), "created_at": at, "updated_at": at,
        "version": e.version,
    }, e.position)]


def _user_updated(e: RecordedEvent) -> list[Write]:
    d = e.data
    fields = {"updated_at": e.recorded_iso, "version": e.version}
    if "name" in d:
        fields["name"] = d["name"]
    if "email" in d:
        fields["email"] = d["email"]
    return [Merge(USERS, e.stream_id[5:], fields, e.position)]


def _user_deactivated(e: RecordedEvent) -> list[Write]:
    return [Merge(USERS, e.stream_id[5:], {"status": "inactive", "updated_at": e.recorded_iso,
                                           "version": e.version}, e.position)]


def _count_created(e: RecordedEvent) -> list[Write]:
    day = e.recorded_iso[:10]  # ISO text in UTC: the first 10 characters are the date
    return [Incr(USER_STATS, STATS_KEY, {"total_users": 1, "active_users": 1,
                                         CREATED_ON + day: 1})]


def _count_deactivated(e: RecordedEvent) -> list[Write]:
    return [Incr(USER_STATS, STATS_KEY, {"active_users": -1})]


USERS_VIEW = Projection(
    "users", (USERS,),
    {u.USER_CREATED: _user_created, u.USER_UPDATED: _user_updated,
     u.USER_DEACTIVATED: _user_deactivated},
    "one document per user: id, name, email, status",
)
USER_STATS_VIEW = Projection(
    "user-stats", (USER_STATS,),
    {u.USER_CREATED: _count_created, u.USER_DEACTIVATED: _count_deactivated},
    "total and active users, users created per day",
)
#: The same as functions of any event (what a test or a notebook calls).
project_users = USERS_VIEW.project
project_user_stats = USER_STATS_VIEW.project
