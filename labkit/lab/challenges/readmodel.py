"""What the read model must say, computed from the log: for the read-side challenges' checks."""

from __future__ import annotations

from typing import Any

from ecommerce.domain import users as u

#: `user-<id>` (ecommerce.domain.users.stream_id).
PREFIX = u.stream_id("")


def users_in_log(store: Any) -> set[str]:
    """Every user id with a UserCreated in the log."""
    out: set[str] = set()
    after = 0
    while True:
        batch = store.read_all(after, 5000, stream_prefix=PREFIX, types=[u.USER_CREATED])
        out.update(e.stream_id[len(PREFIX):] for e in batch)
        if len(batch) < 5000:
            return out
        after = batch[-1].position


def users_in_view(lab: Any) -> set[str]:
    """Every user id query-service lists (all pages)."""
    out: set[str] = set()
    offset = 0
    while True:
        page = lab.query("users", limit=500, offset=offset)
        out.update(str(d["id"]) for d in page["users"])
        offset += len(page["users"])
        if not page["users"] or offset >= page["total"]:
            return out


def compare_users(lab: Any) -> list[str]:
    """Differences between the users the log holds and what the read side shows (empty: none)."""
    logged = users_in_log(lab.saga.store)
    shown = users_in_view(lab)
    total = int(lab.query("user-stats")["total_users"])
    out = []
    missing = sorted(logged - shown)
    if missing:
        out.append(f"{len(missing)} users in the log are missing from query-service: "
                   + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    extra = sorted(shown - logged)
    if extra:
        out.append(f"query-service lists {len(extra)} users the log does not have: "
                   + ", ".join(extra[:5]))
    if total != len(logged):
        out.append(f"user-stats says total_users = {total}, but the log has {len(logged)} "
                   "UserCreated events")
    return out
