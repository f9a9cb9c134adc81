"""Plugins: student code that the running services load and use.

Every `*.py` file in the directory `LABKIT_PLUGINS_DIR` (local mode: `<data dir>/plugins`) is
imported when a lab process starts (every HTTP service, the event processor, the saga
orchestrator). A plugin module registers what it adds with the functions below; nothing else
in it runs later. `lab.deploy_code(...)` writes a plugin file and restarts the processes;
`lab.remove_code(name)` deletes it and restarts them (`labkit.lab.plugins`).

The API (import it in the plugin: `from ecommerce.plugins import projection, saga_step, ...`):

- `projection(Projection(name, collections, {event type: handler}))` -- a new read model. The
  event processor fills it (a new projection starts at position 0 and catches up by itself;
  `POST /api/events/replay {"projections": [name]}` rebuilds it), and query-service serves it
  at `GET /api/queries/views/<name>` (and `/api/queries/views/<name>/<key>`). Its name and
  collections are its own: the lab's projections (`users`, `orders`, ...) cannot be replaced
  or written into by a plugin.
- `saga_step(StepDef(...), after="create_order")` -- a new step in every order saga started
  from now on, with its compensation (`ecommerce.domain.saga.register_step` says the rules).
- `upcaster(event_type, from_version, fn)` -- lifts an event type's data from schema version
  `from_version` to the next one whenever any service reads the log.
- `handler(service, name, fn)` -- `POST /api/plugins/<name>` on that service (one of the saga's
  participants): `fn(ctx, body) -> dict`, where `ctx.append(stream, type, data, event_id=None)`
  appends to the event store (an `event_id` already stored in that stream is not stored
  again: that is how a handler makes itself idempotent), `ctx.read_stream(stream)` reads, and
  `ctx.idempotency_key` is the request's `Idempotency-Key` header. A handler is *not* made
  idempotent for you.

A plugin that fails to import does not take the process down: the error is logged
(`plugin failed`) in one sentence with the file and the line, and the HTTP services answer
`/readyz` with 503 and that sentence until the plugin is fixed or removed. The plugins that
did load keep working.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import reprlib
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ecommerce import logs
from ecommerce.domain import saga as s
from ecommerce.domain.events import Upcaster, UpcastError, upcasters

PLUGINS_ENV = "LABKIT_PLUGINS_DIR"
#: Plugin modules are imported under this package name (`labkit_plugins.<file stem>`).
MODULE_PREFIX = "labkit_plugins."

log = logging.getLogger("plugins")


class NamedProjection(Protocol):
    """What `projection()` needs (an `ecommerce.projections.base.Projection`)."""

    @property
    def name(self) -> str: ...


class HandlerContext(Protocol):
    idempotency_key: str | None
    service: str

    def append(self, stream: str, event_type: str, data: Mapping[str, Any], *,
               event_id: str | None = None) -> dict[str, Any]: ...

    def read_stream(self, stream: str) -> list[dict[str, Any]]: ...


PluginHandler = Callable[[HandlerContext, dict[str, Any]], dict[str, Any]]


@dataclass
class Plugin:
    """One plugin file: what it registered, or why it failed."""

    name: str
    path: str
    error: str = ""
    registered: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error


#: Registries filled by the plugins (the built-in parts of the system live elsewhere).
PROJECTIONS: dict[str, Any] = {}
#: The lab's own projections (name -> collections), which no plugin may take: filled by
#: `ecommerce.projections` when it is imported (as it is before any Projection can be made).
BUILT_IN: dict[str, tuple[str, ...]] = {}
HANDLERS: dict[tuple[str, str], PluginHandler] = {}
#: Loaded (or failed) plugins by name (file stem).
LOADED: dict[str, Plugin] = {}
_current: Plugin | None = None


def _note(kind: str, key: str) -> None:
    if _current is not None:
        _current.registered.append((kind, key))


# --- the API a plugin calls ------------------------------------------------------------------


def projection(p: NamedProjection) -> NamedProjection:
    """Register a new read model (see the module docstring). Returns it.

    The processor runs a guarded copy: each handler gets its own copy of the event (a handler
    that changes `e.data` cannot change what the lab's projections see), must return a list
    of writes, and may write only the collections its projection declares."""
    name = getattr(p, "name", None)
    if not isinstance(name, str) or not name or not callable(getattr(p, "project", None)):
        raise TypeError("projection(...) takes an ecommerce.projections.base.Projection")
    collections = getattr(p, "collections", None)
    if (not isinstance(collections, tuple | list) or not collections
            or not all(isinstance(c, str) for c in collections)):
        raise ValueError(f"projection {name!r}: collections is a tuple of collection names, "
                         f"e.g. (\"{name.replace('-', '_')}\",); got {collections!r}")
    if not all(c.replace("_", "").replace("-", "").isalnum() for c in collections):
        raise ValueError(f"projection {name!r}: collection names are letters, digits, '_' and '-'")
    _refuse_built_in(name, collections)
    _refuse_shared(name, collections)
    PROJECTIONS[name] = GuardedProjection(p, _current)
    _note("projection", name)
    return p


_SHORT = reprlib.Repr()
_SHORT.maxother, _SHORT.maxstring = 120, 80


class PluginProjectionError(Exception):
    """A plugin's projection handler failed or returned something a projection may not write;
    the message names the plugin and what to do."""

    def __repr__(self) -> str:  # the projector shows `repr(exc)`: the sentence alone
        return str(self)


def _blame(plugin: Plugin | None) -> tuple[str, str]:
    """Which plugin file a failure is in, and what the student can do about it."""
    if plugin is None:
        return "a plugin", "fix it and deploy it again"
    return (f"plugin {Path(plugin.path).name}",
            f"fix it and deploy it again, or remove it (lab.remove_code({plugin.name!r}))")


def _line(exc: BaseException, plugin: Plugin | None) -> str:
    """'line N' of the plugin file where `exc` was raised."""
    return _where(exc, Path(plugin.path)) if plugin else "its function"


def _guarded_upcaster(event_type: str, version: int, fn: Upcaster,
                      plugin: Plugin | None) -> Upcaster:
    """`fn` as the stores run it: a failure, or a result that is not data, is an UpcastError
    that names the upcaster, the plugin file and line, and what to do (every read of the log
    that meets such an event fails with it, so it must say where to look)."""
    where, fix = _blame(plugin)
    what = f"upcaster {event_type} v{version}->v{version + 1} of {where}"

    def guarded(data: dict[str, Any]) -> dict[str, Any]:
        try:
            out = fn(data)
        except Exception as exc:
            line = _line(exc, plugin)
            raise UpcastError(f"{what} failed at {line} on {_SHORT.repr(data)}: "
                              f"{type(exc).__name__}: {exc}; {fix}") from exc
        if not isinstance(out, dict):
            raise UpcastError(f"{what} returned {type(out).__name__} {_SHORT.repr(out)}; an "
                              f"upcaster returns the event's new data (a dict); {fix}")
        return out

    return guarded


class GuardedProjection:
    """A plugin's projection as the processor runs it: each handler guarded (`projection`)."""

    def __init__(self, p: Any, plugin: Plugin | None) -> None:
        self.name: str = p.name
        self.collections: tuple[str, ...] = tuple(p.collections)
        self.description: str = getattr(p, "description", "")
        #: The plugin that registered it (its own `project`, maybe overridden, is called).
        self.plugin = plugin
        types = getattr(p, "event_types", None) or frozenset(getattr(p, "handlers", {}))
        owned = frozenset(self.collections)
        self.handlers: dict[str, Callable[[Any], list[Any]]] = {
            t: _guard(self.name, p.project, owned, plugin) for t in types}

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self.handlers)

    def project(self, e: Any) -> list[Any]:
        handler = self.handlers.get(e.type)
        return handler(e) if handler is not None else []


def _guard(pname: str, handler: Callable[[Any], Any], owned: frozenset[str],
           plugin: Plugin | None) -> Callable[[Any], list[Any]]:
    from ecommerce.domain.readmodel import Write

    where, fix = _blame(plugin)

    def guarded(e: Any) -> list[Any]:
        own = e.replace(data=copy.deepcopy(e.data), metadata=copy.deepcopy(e.metadata))
        try:
            out = handler(own)
        except Exception as exc:
            line = _line(exc, plugin)
            raise PluginProjectionError(f"{type(exc).__name__}: {exc} at {line} of {where} "
                                        f"(projection {pname!r}); {fix}") from exc
        if isinstance(out, Write):  # writes are tuples themselves: test first
            raise PluginProjectionError(
                f"projection {pname!r} of {where} returned one write, {_SHORT.repr(out)}, for "
                f"a {e.type}; a handler returns a list of writes: return [{type(out).__name__}"
                f"(...)]; {fix}")
        if not isinstance(out, list | tuple):
            raise PluginProjectionError(
                f"projection {pname!r} of {where} returned {type(out).__name__} "
                f"{_SHORT.repr(out)} for a {e.type}; a handler returns a list of writes "
                f"([Merge(...)], [] for none: did it forget `return`?); {fix}")
        for w in out:
            if not isinstance(w, Write):
                raise PluginProjectionError(
                    f"projection {pname!r} of {where} returned {w!r} in its list for a "
                    f"{e.type}; each item is a write (Put, Merge, Incr or Delete); {fix}")
            if w.collection not in owned:
                raise PluginProjectionError(
                    f"projection {pname!r} of {where} wrote to collection {w.collection!r}, "
                    f"which is not one of its own ({', '.join(sorted(owned))}): a projection "
                    f"writes only the collections it declares; {fix}")
        return list(out)

    return guarded


def _refuse_built_in(name: str, collections: Iterable[str]) -> None:
    """A plugin adds a read model; it never replaces or writes into one of the lab's own (the
    lab's projection would win the name silently, or two projections would fill, and a replay
    of one would wipe, the same collection)."""
    if name in BUILT_IN:
        raise ValueError(f"projection {name!r} is one of the lab's own ({', '.join(BUILT_IN)}); "
                         "a plugin adds a read model under a new name")
    owner = {c: own for own, cs in BUILT_IN.items() for c in cs}
    for c in collections:
        if c in owner:
            raise ValueError(f"projection {name!r}: collection {c!r} belongs to the lab's "
                             f"projection {owner[c]!r}; give yours a collection of its own")


def _refuse_shared(name: str, collections: Iterable[str]) -> None:
    """Two plugin projections never fill one collection (a replay of one would wipe the
    other's documents, and a check would count both): another name, another collection."""
    for other in PROJECTIONS.values():
        if other.name == name:  # the same read model again: the one deployed last wins
            continue
        shared = sorted(set(collections) & set(other.collections))
        if shared:
            owner = getattr(other, "plugin", None)
            remove = f" or remove it (lab.remove_code({owner.name!r}))" if owner else ""
            raise ValueError(f"projection {name!r}: collection {shared[0]!r} is already filled "
                             f"by projection {other.name!r}; give yours a collection of its "
                             f"own{remove}")


def saga_step(step: s.StepDef, after: str) -> s.StepDef:
    """Add a step (with its compensation) to the order saga, right after step `after`."""
    s.register_step(step, after)
    _note("saga_step", step.name)
    return step


def upcaster(event_type: str, from_version: int, fn: Upcaster) -> Upcaster:
    """Lift `event_type` from schema version `from_version` to the next when the log is read."""
    if not isinstance(from_version, int) or from_version < 1:
        raise ValueError("from_version is the schema version the function reads: an int >= 1")
    upcasters.add(event_type, from_version, _guarded_upcaster(event_type, from_version, fn,
                                                              _current))
    _note("upcaster", f"{event_type}:{from_version}")
    return fn


def handler(service: str, name: str, fn: PluginHandler) -> PluginHandler:
    """Serve `POST /api/plugins/<name>` on `service` with `fn(ctx, body) -> dict`."""
    if service not in s.PARTICIPANTS:
        raise ValueError(f"a plugin handler runs in one of {', '.join(s.PARTICIPANTS)}; "
                         f"got {service!r}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"handler name {name!r}: letters, digits, '_' and '-' only")
    HANDLERS[(service, name)] = fn
    _note("handler", f"{service}:{name}")
    return fn


# --- loading ---------------------------------------------------------------------------------


def plugins_dir() -> Path | None:
    value = os.environ.get(PLUGINS_ENV)
    return Path(value) if value else None


def _where(exc: BaseException, path: Path) -> str:
    """'line N' of the plugin file where `exc` happened (its deepest frame in that file)."""
    if isinstance(exc, SyntaxError) and exc.lineno and (exc.filename or "") == str(path):
        return f"line {exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return f"line {line}" if line else "import"


def failure_sentence(name: str, path: Path, exc: BaseException) -> str:
    what = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    return (f"plugin {path.name} failed at {_where(exc, path)}: {type(exc).__name__}: {what}; "
            f"fix it and deploy it again, or remove it (lab.remove_code({name!r}))")


def unload(name: str) -> bool:
    """Undo what plugin `name` registered; False if it was not loaded."""
    plugin = LOADED.pop(name, None)
    sys.modules.pop(MODULE_PREFIX + name, None)
    if plugin is None:
        return False
    for kind, key in plugin.registered:
        if kind == "projection":
            PROJECTIONS.pop(key, None)
        elif kind == "saga_step":
            s.unregister_step(key)
        elif kind == "upcaster":
            etype, _, version = key.rpartition(":")
            upcasters.remove(etype, int(version))
        elif kind == "handler":
            service, _, hname = key.partition(":")
            HANDLERS.pop((service, hname), None)
    return True


def load_file(path: Path, name: str | None = None) -> Plugin:
    """Import one plugin file (unloading an earlier version of it first). Never raises for the
    plugin's own errors: they are in the returned `Plugin.error`, and what it registered before
    failing is undone."""
    global _current
    name = name or path.stem
    unload(name)
    plugin = Plugin(name, str(path))
    LOADED[name] = plugin
    module_name = MODULE_PREFIX + name
    _current = plugin
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a plugin's exit() is its failure, not ours
        error = failure_sentence(name, path, exc)
        unload(name)
        plugin.error = error
        plugin.registered = []
        LOADED[name] = plugin
    except BaseException:  # Ctrl-C (a plugin that loops at import): undo what it registered
        unload(name)
        raise
    finally:
        _current = None
    return plugin


def load_all(directory: Path | None = None, logger: logging.Logger | None = None) -> list[Plugin]:
    """Import every `*.py` in `directory` (default: LABKIT_PLUGINS_DIR), oldest file first:
    when two plugins register the same name, the one deployed last wins (in a ConfigMap
    volume, where that is unknown: the last by name)."""
    directory = directory if directory is not None else plugins_dir()
    if directory is None or not directory.is_dir():
        return []
    out = []
    lg = logger or log
    # A ConfigMap volume (cluster mode) writes every file at once, in no set order: by name.
    by_name = (directory / "..data").exists()
    for path in sorted(directory.glob("*.py"),
                       key=lambda p: (0 if by_name else p.stat().st_mtime_ns, p.name)):
        if path.name.startswith((".", "_")):
            continue
        plugin = load_file(path)
        out.append(plugin)
        if plugin.ok:
            logs.event(lg, "plugin loaded", plugin=path.name,
                       registered=[f"{k} {v}" for k, v in plugin.registered])
        else:
            lg.error(plugin.error, extra={"fields": {"event": "plugin failed",
                                                      "plugin": path.name}})
    return out


def errors() -> list[str]:
    """One sentence per plugin that failed to load."""
    return [p.error for p in LOADED.values() if not p.ok]


def ready_check() -> str | None:
    """For `/readyz`: raise the failed plugins' sentences; else name the loaded ones."""
    failed = errors()
    if failed:
        raise RuntimeError("; ".join(failed))
    names = sorted(LOADED)
    return f"ok; plugins: {', '.join(names)}" if names else None


def handlers_of(service: str) -> dict[str, PluginHandler]:
    return {name: fn for (svc, name), fn in HANDLERS.items() if svc == service}


def registered(kinds: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """(plugin, kind, key) of everything the loaded plugins registered."""
    wanted = set(kinds) if kinds is not None else None
    return [(p.name, k, v) for p in LOADED.values() for k, v in p.registered
            if wanted is None or k in wanted]
