"""ecommerce.plugins: loading student code, saying which line failed, undoing a plugin."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ecommerce import plugins
from ecommerce.domain import saga as s
from ecommerce.domain.events import RecordedEvent, upcasters
from ecommerce.projections import all_projections, get_projections
from labkit.lab.plugins import PluginError, source_of, users_of

GOOD = '''
from ecommerce.domain.readmodel import Incr
from ecommerce.plugins import projection, upcaster
from ecommerce.projections.base import Projection

def placed(e):
    return [Incr("per_user", e.data["user_id"], {"orders": 1})]

projection(Projection("per-user", ("per_user",), {"OrderPlaced": placed}))
upcaster("Legacy", 1, lambda d: {"points": d["pts"]})
'''


@pytest.fixture
def plugin_dir(tmp_path: Path):
    yield tmp_path
    for name in list(plugins.LOADED):
        plugins.unload(name)


def test_a_plugin_registers_a_projection_and_an_upcaster_and_unloading_undoes_both(plugin_dir):
    (plugin_dir / "good.py").write_text(GOOD)
    [loaded] = plugins.load_all(plugin_dir)
    assert loaded.ok and loaded.registered == [("projection", "per-user"), ("upcaster", "Legacy:1")]
    assert "per-user" in all_projections() and get_projections(["per-user"])[0].name == "per-user"
    e = RecordedEvent("i", "x-1", 1, 1, "Legacy", 1, {"pts": 3}, {}, "2026-01-01T00:00:00+00:00")
    assert upcasters.upcast(e).data == {"points": 3} and upcasters.upcast(e).schema_version == 2
    assert plugins.ready_check() == "ok; plugins: good"
    assert plugins.unload("good")
    assert "per-user" not in all_projections() and upcasters.upcast(e).data == {"pts": 3}


@pytest.mark.parametrize("source, where", [
    ("x = 1\ny = (\n", "line 2: SyntaxError"),
    ("from ecommerce.plugins import saga_step\n\nsaga_step(None, after='x')\n", "line 3: AttributeError"),
    ("import os\nos.environ['X']\n", "line 2: KeyError"),
])
def test_a_failing_plugin_says_file_and_line_in_one_sentence_and_others_still_load(
        plugin_dir, source, where):
    (plugin_dir / "a_bad.py").write_text(source)
    (plugin_dir / "b_good.py").write_text(GOOD)
    loaded = {p.name: p for p in plugins.load_all(plugin_dir)}
    assert f"plugin a_bad.py failed at {where}" in loaded["a_bad"].error
    assert "lab.remove_code('a_bad')" in loaded["a_bad"].error
    assert loaded["b_good"].ok
    with pytest.raises(RuntimeError, match=r"a_bad\.py failed"):
        plugins.ready_check()


@pytest.mark.parametrize("name, collection, says", [
    ("orders", "fixed_orders", "projection 'orders' is one of the lab's own (users, "),
    ("orders-v2", "order_stats", "collection 'order_stats' belongs to the lab's projection "
                                 "'orders'"),
])
def test_a_plugin_cannot_replace_or_write_into_a_projection_of_the_lab(
        plugin_dir, name, collection, says):
    """Before: a plugin projection named 'orders' loaded as OK and was silently ignored (the
    lab's own won the name); one writing into 'order_stats' doubled its counts."""
    (plugin_dir / "fix.py").write_text(GOOD.replace('"per-user", ("per_user",)',
                                                    f'"{name}", ("{collection}",)'))
    [p] = plugins.load_all(plugin_dir)
    assert not p.ok and "plugin fix.py failed at line 9: ValueError: " in p.error, p.error
    assert says in p.error, p.error
    assert all_projections()["orders"].collections == ("orders", "order_stats")
    assert name not in plugins.PROJECTIONS


def test_what_a_plugin_registered_before_failing_is_undone(plugin_dir):
    (plugin_dir / "half.py").write_text(GOOD + "\nraise ValueError('stop')\n")
    [p] = plugins.load_all(plugin_dir)
    assert "failed at line 12: ValueError: stop" in p.error
    assert "per-user" not in all_projections() and p.registered == []


def test_the_plugin_deployed_last_wins_a_name_both_register(plugin_dir):
    step = '''
from ecommerce.plugins import handler
handler("user-service", "notify", lambda ctx, body: {{"by": "{who}"}})
'''
    (plugin_dir / "z_first.py").write_text(step.format(who="first"))
    (plugin_dir / "a_second.py").write_text(step.format(who="second"))
    os.utime(plugin_dir / "z_first.py", ns=(1, 1))
    plugins.load_all(plugin_dir)
    assert plugins.handlers_of("user-service")["notify"](None, {}) == {"by": "second"}


def test_a_saga_step_plugin_changes_new_sagas_and_unloads(plugin_dir):
    (plugin_dir / "step.py").write_text('''
from ecommerce.domain.saga import StepDef
from ecommerce.plugins import saga_step
saga_step(StepDef("notify_customer", "user-service", "notify", "retract_notice",
                  request=lambda st: ("POST", "/api/plugins/notify", {}),
                  compensation_request=lambda st: ("POST", "/api/plugins/retract", {})),
          after="create_order")
''')
    [p] = plugins.load_all(plugin_dir)
    assert p.ok and "notify_customer" in [x.name for x in s.current_steps()]
    plugins.unload("step")
    assert s.current_steps() == s.ORDER_SAGA


def test_the_lab_side_takes_a_function_body_or_source_and_restarts_only_the_users():
    def my_plugin():
        from ecommerce.plugins import upcaster  # noqa: F401

    text, name = source_of(my_plugin)
    assert name == "my_plugin" and text.startswith("def my_plugin():") and text.endswith("my_plugin()\n")
    assert source_of("  x = 1\n") == ("x = 1\n", None)
    with pytest.raises(PluginError, match="takes a function"):
        source_of(42)  # type: ignore[arg-type]
    assert users_of([("projection", "v")]) == ["query-service", "event-store-api", "event-processor"]
    assert users_of([("handler", "user-service:notify")]) == ["user-service"]
    assert users_of([("saga_step", "n")]) == ["command-service", "event-processor",
                                             "saga-orchestrator"]


def test_a_plugin_that_registers_nothing_is_not_deployed_and_not_an_error(tmp_path, capsys):
    from types import SimpleNamespace

    from labkit.lab.plugins import Plugins

    lab = SimpleNamespace(mode="local", runtime=SimpleNamespace(plugins_dir=tmp_path / "plugins"))
    out = Plugins(lab).deploy("def stub():\n    pass\n", name="stub")
    assert out["registered"] == [] and "nothing was deployed" in out["note"]
    assert not (tmp_path / "plugins" / "stub.py").exists() and "stub" not in plugins.LOADED
    assert "registers nothing" in capsys.readouterr().out
    with pytest.raises(PluginError, match=r"plugin bad\.py failed at line 2: NameError"):
        Plugins(lab).deploy("x = 1\nnope\n", name="bad")


def test_query_service_serves_a_plugin_view_and_404s_others(tmp_path, plugin_dir):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from ecommerce.config import Settings
    from ecommerce.domain.readmodel import Incr, WriteBuffer
    from ecommerce.services.query import create_app
    from ecommerce.store.sqlite_read import SqliteReadStore

    (plugin_dir / "good.py").write_text(GOOD)
    plugins.load_all(plugin_dir)
    reads = SqliteReadStore(tmp_path / "read.db")
    buffer = WriteBuffer()
    buffer.add(Incr("per_user", "alice", {"orders": 2}))
    reads.commit(buffer, {"per-user": 7}, {"per-user": 0})
    app = create_app(replace(Settings.from_env(), data_dir=tmp_path), reads)
    with TestClient(app) as client:
        body = client.get("/api/queries/views/per-user").json()
        assert body["collections"] == {"per_user": [{"key": "alice", "orders": 2}]}
        assert body["checkpoint"] == 7 and body["total"] == {"per_user": 1}
        assert client.get("/api/queries/views/per-user/alice").json()["orders"] == 2
        missing = client.get("/api/queries/views/users")
        assert missing.status_code == 404 and "added: per-user" in missing.json()["detail"]


@pytest.mark.parametrize("configmap", [False, True])
def test_of_two_plugins_registering_one_name_the_last_deployed_wins(plugin_dir, configmap):
    """Locally the newer file wins. In a ConfigMap volume (its `..data` link; the kubelet writes
    every file at once, in no set order) the last by name wins."""
    def source(label: str) -> str:
        return GOOD.replace('{"orders": 1}', f'{{"by": "{label}"}}').replace(
            'upcaster("Legacy", 1, lambda d: {"points": d["pts"]})\n', "")

    (plugin_dir / "b_newer_name.py").write_text(source("b"))
    (plugin_dir / "a_older_name.py").write_text(source("a"))
    os.utime(plugin_dir / "b_newer_name.py", ns=(1_000_000_000, 1_000_000_000))  # b: older file
    if configmap:
        (plugin_dir / "..data").mkdir()
    plugins.load_all(plugin_dir)
    e = RecordedEvent("i", "order-1", 1, 1, "OrderPlaced", 1, {"user_id": "u1"}, {},
                      "2026-01-01T00:00:00+00:00")
    [write] = get_projections(["per-user"])[0].handlers["OrderPlaced"](e)
    assert write.by == {"by": "b" if configmap else "a"}


def test_a_plugin_that_exits_is_a_failed_deploy_and_leaves_no_staged_file(tmp_path):
    """`raise SystemExit(3)` escaped deploy_code (and the plugin was listed with no error);
    the files of failed deploys stayed in plugins-staging."""
    from types import SimpleNamespace

    from labkit.lab.plugins import Plugins

    lab = SimpleNamespace(mode="local", runtime=SimpleNamespace(plugins_dir=tmp_path / "plugins"))
    with pytest.raises(PluginError, match=r"^plugin bad5\.py failed at line 2: SystemExit: 3;"):
        Plugins(lab).deploy("x = 1\nraise SystemExit(3)\n", name="bad5")
    with pytest.raises(PluginError, match=r"plugin bad6\.py failed at line 1: NameError"):
        Plugins(lab).deploy("nope\n", name="bad6")
    assert "bad5" not in plugins.LOADED and "bad6" not in plugins.LOADED
    assert list((tmp_path / "plugins-staging").iterdir()) == []
    assert not (tmp_path / "plugins").exists()


# ---- a plugin projection cannot harm the lab's own read models -----------------------------

MUTATES = '''
from ecommerce.domain.readmodel import Merge
from ecommerce.plugins import projection
from ecommerce.projections.base import Projection

def created(e):
    d = e.data
    d["name"] = d["name"].upper()  # changes the event it was given
    return [Merge("loud_names", d["user_id"], d)]

projection(Projection("loud-names", ("loud_names",), {"UserCreated": created}))
'''


def _lab_and_plugin_projected(tmp_path: Path, source: str):
    """The processor's projector (the lab's projections and the plugin's, plugins first as
    `get_projections` orders them) over one user's creation."""
    from ecommerce.domain import users
    from ecommerce.projections.projector import Projector
    from ecommerce.store.sqlite_events import SqliteEventStore
    from ecommerce.store.sqlite_read import SqliteReadStore

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "student.py").write_text(source)
    [loaded] = plugins.load_all(tmp_path / "plugins")
    assert loaded.ok, loaded.error
    events, reads = SqliteEventStore(tmp_path / "e.db"), SqliteReadStore(tmp_path / "r.db")
    events.append(users.stream_id("mia"), [users.create(users.User("mia"), "Mixed Case",
                                                        "mia@example.com")], expected_version=0)
    return Projector(events, reads, get_projections()), reads


def test_a_plugin_handler_that_changes_its_event_cannot_change_the_labs_users(
        tmp_path, plugin_dir):
    projector, reads = _lab_and_plugin_projected(tmp_path, MUTATES)
    projector.run_once()
    assert reads.get("loud_names", "mia")["name"] == "MIXED CASE"
    assert reads.get("users", "mia")["name"] == "Mixed Case"  # as the log says


@pytest.mark.parametrize("body, sentence", [
    ('return [Merge("users", e.data["user_id"], {"name": "OVERWRITTEN"})]',
     "wrote to collection 'users', which is not one of its own (mine): a projection writes "
     "only the collections it declares"),
    ('return Merge("mine", e.data["user_id"], {"n": 1})',
     "returned one write, Merge(collection='mine', key='mia', fields={'n': 1}, order=0), "
     "for a UserCreated; a handler returns a list of writes: return [Merge(...)]"),
    ('pass', "returned NoneType None for a UserCreated; a handler returns a list of writes "
     "([Merge(...)], [] for none: did it forget `return`?)"),
    ('return ["mine"]', "returned 'mine' in its list for a UserCreated; each item is a write"),
    ('raise ValueError("boom for " + e.data["user_id"])',
     "ValueError: boom for mia at line 7 of plugin student.py (projection 'mine')"),
])
def test_a_plugin_projection_that_misbehaves_stops_with_a_sentence_and_writes_nothing(
        tmp_path, plugin_dir, body, sentence):
    from ecommerce.projections.projector import ProjectionError

    source = ("from ecommerce.domain.readmodel import Merge\n"
              "from ecommerce.plugins import projection\n"
              "from ecommerce.projections.base import Projection\n\n"
              "def created(e):\n"
              "    user = e.data['user_id']\n"
              f"    {body}\n\n"
              "projection(Projection('mine', ('mine',), {'UserCreated': created}))\n")
    projector, reads = _lab_and_plugin_projected(tmp_path, source)
    with pytest.raises(ProjectionError) as raised:
        projector.run_once()
    message = str(raised.value)
    assert sentence in message
    assert "projection 'mine' failed on event #1" in message
    assert "lab.remove_code('student')" in message
    assert reads.get("users", "mia") is None and reads.count("mine") == 0  # nothing committed


def test_collections_must_be_a_tuple_of_names_not_one_string(plugin_dir):
    (plugin_dir / "s.py").write_text(
        "from ecommerce.plugins import projection\n"
        "from ecommerce.projections.base import Projection\n"
        "projection(Projection('opu', 'opu', {'OrderPlaced': lambda e: []}))\n")
    [loaded] = plugins.load_all(plugin_dir)
    assert "collections is a tuple of collection names, e.g. (\"opu\",); got 'opu'" in loaded.error


def test_a_plugin_interrupted_at_import_leaves_nothing_registered(plugin_dir):
    (plugin_dir / "loop.py").write_text(
        "from ecommerce.plugins import projection\n"
        "from ecommerce.projections.base import Projection\n"
        "projection(Projection('spin', ('spin',), {'OrderPlaced': lambda e: []}))\n"
        "raise KeyboardInterrupt  # what Ctrl-C does to an import that loops\n")
    with pytest.raises(KeyboardInterrupt):
        plugins.load_all(plugin_dir)
    assert "spin" not in plugins.PROJECTIONS and "loop" not in plugins.LOADED


# ---- a plugin upcaster that fails says which, where, and what to do -------------------------

@pytest.mark.parametrize("body, sentence", [
    ('return {"points": d["points"]}',
     "upcaster Legacy v1->v2 of plugin up.py failed at line 4 on {'pts': 3}: KeyError: 'points'"),
    ('d["points"] = d.pop("pts")',
     "upcaster Legacy v1->v2 of plugin up.py returned NoneType None; an upcaster returns the "
     "event's new data (a dict)"),
])
def test_a_failing_upcaster_names_itself_over_http_too(tmp_path, plugin_dir, body, sentence):
    from fastapi.testclient import TestClient

    from ecommerce.config import Settings
    from ecommerce.domain.events import NewEvent, UpcastError
    from ecommerce.services.eventstore_api import create_app
    from ecommerce.store.sqlite_events import SqliteEventStore
    from ecommerce.store.sqlite_read import SqliteReadStore

    (plugin_dir / "up.py").write_text("from ecommerce.plugins import upcaster\n\n"
                                      "def lift(d):\n"
                                      f"    {body}\n\n"
                                      "upcaster('Legacy', 1, lift)\n")
    [loaded] = plugins.load_all(plugin_dir)
    assert loaded.ok, loaded.error
    events = SqliteEventStore(tmp_path / "e.db")
    events.append("legacy-1", [NewEvent("Legacy", {"pts": 3}, schema_version=1)], "none")
    with pytest.raises(UpcastError, match=re.escape(sentence)):
        events.read_stream("legacy-1")
    app = create_app(Settings.from_env(), events, SqliteReadStore(tmp_path / "r.db"))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/events/streams/legacy-1")
    assert (r.status_code, r.json()["reason"]) == (500, "upcaster_failed"), r.text
    assert sentence in r.json()["detail"] and "lab.remove_code('up')" in r.json()["detail"]


def test_two_plugin_projections_never_fill_one_collection(plugin_dir):
    (plugin_dir / "a_first.py").write_text(GOOD)  # per-user fills per_user
    (plugin_dir / "b_second.py").write_text(GOOD.replace('Projection("per-user"',
                                                         'Projection("per-user-2"'))
    os.utime(plugin_dir / "b_second.py", ns=(2 * 10**18, 2 * 10**18))  # deployed last
    loaded = {p.name: p for p in plugins.load_all(plugin_dir)}
    assert loaded["a_first"].ok
    assert ("collection 'per_user' is already filled by projection 'per-user'; give yours a "
            "collection of its own or remove it (lab.remove_code('a_first'))") in \
        loaded["b_second"].error
