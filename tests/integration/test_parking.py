"""Parking a poison event (real SQLite stores, no processes): the projector stops on it, goes
past it once it is parked, and a replay makes the same decision. Also the deliberate defect of
the `replaying-projector` challenge: committed apart from its writes, a checkpoint lets a
restarted projector count events twice, which the correct projector never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecommerce.domain import orders as o
from ecommerce.domain import users as u
from ecommerce.domain.events import NewEvent
from ecommerce.projections import get_projections
from ecommerce.projections.checkpoint_apart import CheckpointApartProjector
from ecommerce.projections.parking import park, parked_positions
from ecommerce.projections.projector import ProjectionError, Projector
from ecommerce.projections.replay import replay
from ecommerce.store.sqlite_events import SqliteEventStore
from ecommerce.store.sqlite_read import SqliteReadStore


def _user(es: SqliteEventStore, i: int) -> int:
    user = u.User(f"user-{i}")
    return es.append(u.stream_id(user.id), [u.create(user, f"User {i}", f"u{i}@example.com")],
                     "none").positions[0]


def _order(es: SqliteEventStore, oid: str) -> None:
    placed = o.place(o.Order(oid), "alice", [{"sku": "MOUSE-WL", "quantity": 1, "price": 2500}])
    es.append(o.stream_id(oid), [placed, NewEvent(o.ORDER_CONFIRMED,
                                                  {"order_id": oid, "total": 2500})], "none")


def _poison(es: SqliteEventStore, oid: str) -> int:
    bad = NewEvent(o.ORDER_CONFIRMED, {"order_id": oid, "total": "25.00"},
                   {"producer": "billing/resend-confirmations"})
    return es.append(o.stream_id(oid), [bad], "any").positions[0]


@pytest.fixture
def stores(tmp_path: Path):
    es, rs = SqliteEventStore(tmp_path / "e.db"), SqliteReadStore(tmp_path / "r.db")
    yield es, rs
    es.close()
    rs.close()


def test_a_poison_event_stops_the_projector_until_it_is_parked(stores) -> None:
    es, rs = stores
    _order(es, "o1")
    _user(es, 1)
    bad = _poison(es, "o1")
    after = _user(es, 2)
    notes: list[str] = []
    projector = Projector(es, rs, get_projections(), batch_size=500, on_notice=notes.append)
    for _ in range(2):  # every retry fails on the same event; nothing after it is committed
        with pytest.raises(ProjectionError, match=f"#{bad} ") as failed:
            projector.step()
        assert failed.value.position == bad
    assert rs.get("users", "user-1") is None  # same batch as the poison: not committed either

    parked = park(es, bad, "duplicate with a decimal total")
    assert parked["position"] == bad and parked["event_type"] == o.ORDER_CONFIRMED
    assert parked["record_position"] == es.last_position() > bad  # where the record went
    again = park(es, bad, "again")
    assert again["already_parked"] is True  # parking twice records once
    assert parked_positions(es) == {bad}

    projector.run_once()
    assert rs.get("users", "user-2") is not None
    assert rs.checkpoint("orders") == es.last_position() >= after
    stats = rs.get("order_stats", "summary")
    assert stats["confirmed"] == 1 and stats["confirmed_revenue"] == 2500  # the duplicate skipped
    assert len([n for n in notes if f"parked event #{bad}" in n]) == 1

    # A replay of the same log, into an empty read store, makes the same decision.
    rebuilt = SqliteReadStore(es.path.parent / "rebuilt.db")
    try:
        replay(es, rebuilt, get_projections(), progress=False)
        assert rebuilt.get("order_stats", "summary") == stats
        assert rebuilt.get("users", "user-2") is not None
    finally:
        rebuilt.close()


def test_parking_is_refused_for_a_position_that_does_not_exist(stores) -> None:
    es, _ = stores
    _user(es, 1)
    with pytest.raises(ValueError, match="no event at position 99"):
        park(es, 99, "typo")
    with pytest.raises(ValueError, match="say why"):
        park(es, 1, "  ")


def test_a_parked_event_that_projects_fine_is_still_projected(stores) -> None:
    """Parking only ever skips an event a projection fails on: incremental and replay agree."""
    es, rs = stores
    pos = _user(es, 1)
    park(es, pos, "parked by mistake")
    Projector(es, rs, get_projections()).run_once()
    assert rs.get("users", "user-1") is not None


def test_a_checkpoint_committed_apart_counts_events_twice_after_a_crash(stores) -> None:
    es, rs = stores
    for i in range(3):
        _user(es, i)
    defective = CheckpointApartProjector(es, rs, get_projections())
    defective.run_once()
    assert rs.get("user_stats", "summary")["total_users"] == 3
    assert rs.checkpoint("users") == 0  # the writes are in, the checkpoint is not
    # "SIGKILL": the process is gone without `save`; a new one starts from the stored checkpoint.
    CheckpointApartProjector(es, rs, get_projections()).run_once()
    assert rs.get("user_stats", "summary")["total_users"] == 6

    # The correct projector, restarted as often as you like, never counts twice.
    rs2 = SqliteReadStore(es.path.parent / "correct.db")
    try:
        Projector(es, rs2, get_projections()).run_once()
        Projector(es, rs2, get_projections()).run_once()
        assert rs2.get("user_stats", "summary")["total_users"] == 3
    finally:
        rs2.close()



def test_a_replay_stopped_by_a_poison_event_says_which_and_how_and_changes_nothing(
        stores, monkeypatch, capsys) -> None:
    """Before: `labkit replay` ended in a ProjectionError traceback, POST /api/events/replay in
    a plain-text 500 (docs/api.md: never a 500 for any input)."""
    from fastapi.testclient import TestClient

    from ecommerce.config import Settings
    from ecommerce.services.eventstore_api import create_app
    from labkit.cli import main

    es, rs = stores
    _order(es, "o1")
    _user(es, 1)
    Projector(es, rs, get_projections()).run_once()
    before = rs.get("order_stats", "summary")
    bad = _poison(es, "o1")

    with TestClient(create_app(Settings.from_env(), es, rs)) as client:
        r = client.post("/api/events/replay")
    assert (r.status_code, r.json()["reason"], r.json()["position"]) == (409, "replay_stopped",
                                                                         bad), r.text
    said = r.json()["detail"]
    assert said.startswith(f"replay stopped: projection 'orders' failed on event #{bad} "
                           f"(OrderConfirmed in order-o1)"), said
    assert f"park it (labkit events park {bad} --reason '...') and replay again" in said

    for var, path in (("LABKIT_EVENTS_DB", es.path), ("LABKIT_READ_DB", rs.path)):
        monkeypatch.setenv(var, str(path))
    monkeypatch.delenv("LABKIT_PG_URL", raising=False)
    monkeypatch.delenv("LABKIT_REDIS_URL", raising=False)
    capsys.readouterr()
    assert main(["replay", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: replay stopped: projection 'orders' failed on event #{bad}")
    assert "Traceback" not in err
    assert rs.get("order_stats", "summary") == before  # nothing swapped in

    park(es, bad, "duplicate with a decimal total")
    assert main(["replay", "--quiet"]) == 0
    assert rs.get("order_stats", "summary") == before
