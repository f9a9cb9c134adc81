from __future__ import annotations

import pytest

from ecommerce.domain import users as u
from ecommerce.store.sqlite_events import SqliteEventStore


def test_user_lifecycle_is_folded_from_its_events(tmp_path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    user = u.User("42")
    store.append(u.stream_id("42"), [u.create(user, " Kim ", "Kim@Example.com")], "none")
    user = u.fold("42", store.read_stream("user-42"))
    assert (user.name, user.email, user.status, user.version) == ("Kim", "kim@example.com", "active", 1)
    store.append("user-42", [u.update(user, email="new@example.com")], user.version)
    user = u.fold("42", store.read_stream("user-42"))
    store.append("user-42", [u.deactivate(user, "left")], user.version)
    user = u.fold("42", store.read_stream("user-42"))
    assert (user.email, user.status, user.version) == ("new@example.com", "inactive", 3)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: u.create(u.User("1", version=1), "a", "a@b.co"), "already_exists"),
        (lambda: u.create(u.User("1"), "a", "not-an-email"), "invalid_email"),
        (lambda: u.create(u.User("1"), "  ", "a@b.co"), "invalid_name"),
        (lambda: u.create(u.User("1"), "Kim\x00", "a@b.co"), "invalid_name"),
        (lambda: u.create(u.User("1"), "Kim\nLee", "a@b.co"), "invalid_name"),
        # "Kim" + RIGHT-TO-LEFT OVERRIDE: the name would display reversed
        (lambda: u.update(u.User("1", version=1), name="Kim\u202egnp.exe"), "invalid_name"),
        (lambda: u.update(u.User("1"), name="x"), "not_found"),
        (lambda: u.update(u.User("1", version=1)), "nothing_to_update"),
        (lambda: u.deactivate(u.User("1", version=2, status="inactive")), "already_inactive"),
        (lambda: u.update(u.User("1", version=2, status="inactive"), name="x"), "inactive"),
    ],
)
def test_commands_that_break_a_rule_say_which(call, reason) -> None:
    with pytest.raises(u.UserRuleError) as info:
        call()
    assert info.value.reason == reason


def test_a_name_in_any_script_is_kept() -> None:
    assert u.create(u.User("1"), " 김민수 (Минсу) ", "a@b.co").data["name"] == "김민수 (Минсу)"
