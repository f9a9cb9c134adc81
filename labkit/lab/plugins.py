"""Deploy student code into the running lab: `lab.deploy_code(...)`, `lab.remove_code(name)`.

The system side is `ecommerce.plugins` (what a plugin may register: projections, saga steps,
upcasters, participant handlers). Here the lab writes the plugin file into the directory every
lab process loads at start (local mode: `<data dir>/plugins`, `LABKIT_PLUGINS_DIR`) and restarts
the processes that use what it registers:

    def orders_per_user():                      # a function whose body is the plugin
        from ecommerce.domain.readmodel import Incr
        from ecommerce.plugins import projection
        from ecommerce.projections.base import Projection

        def placed(e):
            return [Incr("orders_per_user", e.data["user_id"], {"orders": 1})]

        projection(Projection("orders-per-user", ("orders_per_user",), {"OrderPlaced": placed}))

    lab.deploy_code(orders_per_user)            # or a string of Python source, name="..."
    lab.query("views/orders-per-user")          # served by query-service
    lab.remove_code("orders_per_user")

The code is first loaded in this Python process: a plugin that fails says which line and why
(`PluginError`), and nothing is deployed. A service that still fails to load it answers
`/readyz` with that sentence; `deploy_code` raises it and `remove_code` takes the file away.

Cluster mode: the plugin files are the keys of the ConfigMap `labkit-plugins`, which every lab
Deployment and Job mounts at LABKIT_PLUGINS_DIR (`/plugins`, optional: none, no plugins).
`deploy_code` writes the key (server-side apply) and restarts the Deployments that use what the
plugin registers (`kubectl rollout restart`, then waits for the rollouts); `remove_code`
removes the key and restarts them. A pod that cannot load a plugin never becomes ready: the
restart then times out, and `lab.logs(name)` says why. The files of a ConfigMap volume all have
one modification time, so when two plugins register the same name, the later in alphabetical
order wins there (locally: the one deployed last).
"""

from __future__ import annotations

import inspect
import re
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecommerce import plugins
from ecommerce.services.registry import SERVICES

if TYPE_CHECKING:
    import pandas as pd

#: The lab processes that use each kind of registration (besides this notebook's kernel).
USERS_OF: dict[str, tuple[str, ...]] = {
    "projection": ("event-processor", "query-service", "event-store-api"),
    "saga_step": ("saga-orchestrator", "command-service", "event-processor"),
    "upcaster": tuple(SERVICES),
}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class PluginError(RuntimeError):
    """Plugin code that cannot be deployed; the message says which line and what to do."""


def source_of(code: Callable[..., Any] | str) -> tuple[str, str | None]:
    """(plugin source, default name) of a function whose body is the plugin, or of source text."""
    if isinstance(code, str):
        return textwrap.dedent(code), None
    if not inspect.isfunction(code):
        raise PluginError("deploy_code takes a function (its body is the plugin) or a string of "
                          f"Python source; got {type(code).__name__}")
    try:
        text = textwrap.dedent(inspect.getsource(code))
    except (OSError, TypeError):
        raise PluginError(f"cannot read the source of {code.__name__}: define it in a notebook "
                          "cell or a file, or pass the source as a string") from None
    return f"{text}\n\n{code.__name__}()\n", code.__name__


def users_of(registered: Iterable[tuple[str, str]]) -> list[str]:
    """The lab processes to restart for these registrations, in the registry's order."""
    wanted: set[str] = set()
    for kind, key in registered:
        if kind == "handler":
            wanted.add(key.partition(":")[0])
        else:
            wanted.update(USERS_OF.get(kind, ()))
    return [name for name in SERVICES if name in wanted]


class Plugins:
    """The lab's side of the plugins (`lab.deploy_code`, `lab.remove_code`, `lab.plugins()`)."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab

    @property
    def cluster(self) -> bool:
        return bool(self.lab.mode == "cluster")

    @property
    def directory(self) -> Path:
        """Local mode: the directory the lab processes load plugins from."""
        return Path(self.lab.runtime.plugins_dir)

    def load_here(self) -> list[plugins.Plugin]:
        """Load the deployed plugins into this process too (what `labkit.connect()` does)."""
        if not self.cluster:
            return plugins.load_all(self.directory)
        with tempfile.TemporaryDirectory(prefix="labkit-plugins-") as tmp:
            for file, source in sorted(self.lab.runtime.plugin_sources().items()):
                (Path(tmp) / file).write_text(source, encoding="utf-8")
            return plugins.load_all(Path(tmp))

    def deploy(self, code: Callable[..., Any] | str, name: str | None = None,
               restart: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Write `code` as plugin `name`, load it here, restart the processes that use it.

        `restart`: None restarts the processes that use what the plugin registers (a
        projection: event-processor, query-service, event-store-api; a saga step:
        saga-orchestrator, command-service, event-processor; an upcaster: every service; a
        handler: its service); "all", or a list of names. Returns what was registered and
        restarted.
        """
        if restart is not None and not isinstance(restart, str):
            restart = list(restart)  # checked now and used after the restart: read it once
        self._check_restart(restart)
        text, default = source_of(code)
        name = name or default
        if not name or not NAME_RE.match(name):
            raise PluginError(f"give the plugin a name of letters, digits and '_' (got {name!r}): "
                              "lab.deploy_code(code, name='my_plugin')")
        if self.cluster:  # the file goes into the ConfigMap: stage it where it is cleaned up
            with tempfile.TemporaryDirectory(prefix="labkit-staging-") as tmp:
                return self._deploy_from(Path(tmp), name, text, restart)
        return self._deploy_from(self.directory.parent / "plugins-staging", name, text, restart)

    def _deploy_from(self, staging: Path, name: str, text: str,
                     restart: Iterable[str] | str | None) -> dict[str, Any]:
        """`deploy`, with the plugin first written into and loaded from `staging`."""
        staging.mkdir(parents=True, exist_ok=True)
        staged = staging / f"{name}.py"
        staged.write_text(text, encoding="utf-8")
        before = plugins.LOADED.get(name)
        old = list(before.registered) if before is not None else []
        loaded = plugins.load_file(staged, name)
        if not loaded.ok:
            plugins.unload(name)
            staged.unlink(missing_ok=True)
            raise PluginError(loaded.error.replace(str(staged), f"{name}.py"))
        if not loaded.registered:  # e.g. the exercise's stub: nothing to deploy, not an error
            plugins.unload(name)
            staged.unlink(missing_ok=True)
            note = (f"plugin {name} registers nothing, so nothing was deployed: call "
                    "projection(...), saga_step(...), upcaster(...) or handler(...) in it "
                    "(from ecommerce.plugins)")
            print(f"⚠️ {note}")
            return {"plugin": name, "file": None, "registered": [], "restarted": [],
                    "note": note}
        if self.cluster:
            from labkit.runtime.cluster import PLUGINS_CONFIGMAP

            self.lab.runtime.set_plugin(name, text)
            target = f"configmap/{PLUGINS_CONFIGMAP}/{name}.py"
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = str(self.directory / f"{name}.py")
            shutil.move(str(staged), target)
        plugins.LOADED[name].path = target
        names = self._names(restart, [*old, *loaded.registered])
        restarted = self._restart(names, name)
        out: dict[str, Any] = {"plugin": name, "file": target,
                               "registered": [f"{k} {v}" for k, v in loaded.registered],
                               "restarted": restarted}
        down = [n for n in names if n not in restarted]
        if down and not self.cluster:
            out["note"] = (f"not running, so not restarted: {', '.join(down)}; "
                           f"{'they load' if len(down) > 1 else 'it loads'} the plugin when "
                           "started (lab.up()), and only then does it run on the events")
            print(f"⚠️ {out['note']}")
        return out

    def remove(self, name: str, restart: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Delete plugin `name`, unload it here, restart the processes that used it."""
        loaded = plugins.LOADED.get(name)
        registered = list(loaded.registered) if loaded is not None else []
        if self.cluster:
            existed = self.lab.runtime.set_plugin(name, None)
        else:
            target = self.directory / f"{name}.py"
            existed = target.exists()
            target.unlink(missing_ok=True)
        plugins.unload(name)
        # Another deployed plugin may register what this one did (the last deployed wins):
        # load the rest again, so this kernel has what the restarted processes will load.
        self.load_here()
        if not existed and loaded is None:
            owners = sorted({p for p, _, key in plugins.registered()
                             if name in (key, key.partition(":")[2])})
            hint = (f"; {name!r} is registered by plugin {', '.join(owners)}: "
                    f"lab.remove_code({owners[0]!r})" if owners else "")
            deployed = ", ".join(sorted(plugins.LOADED)) or "none"
            return {"plugin": name, "removed": False, "restarted": [],
                    "note": f"no plugin named {name!r} is deployed (deployed: {deployed}){hint}"}
        names = self._names(restart, registered) if registered or restart else list(SERVICES)
        return {"plugin": name, "removed": existed, "restarted": self._restart(names, name)}

    def table(self) -> pd.DataFrame:
        """The deployed plugins: name, file, what each registers, or why it failed."""
        import pandas as pd

        if self.cluster:  # a new kernel has not loaded what an earlier one deployed
            self.load_here()
        rows = []
        for p in plugins.LOADED.values():
            rows.append({"plugin": p.name, "file": Path(p.path).name,
                         "registers": ", ".join(f"{k} {v}" for k, v in p.registered),
                         "error": p.error})
        return pd.DataFrame(rows, columns=["plugin", "file", "registers", "error"])

    @staticmethod
    def _names(restart: Iterable[str] | str | None,
               registered: Iterable[tuple[str, str]]) -> list[str]:
        if restart == "all":
            return list(SERVICES)
        if restart is None:
            return users_of(registered)
        return Plugins._check_restart(restart)

    @staticmethod
    def _check_restart(restart: Iterable[str] | str | None) -> list[str]:
        """The processes `restart` names (none for None or "all"); an unknown one is refused."""
        if restart is None or restart == "all":
            return []
        names = [restart] if isinstance(restart, str) else list(restart)
        unknown = [str(n) for n in names if n not in SERVICES]
        if unknown:
            raise PluginError(f"restart: unknown process(es) {', '.join(unknown)}; the lab's "
                              f"processes are {', '.join(SERVICES)}")
        return names

    def _restart(self, names: list[str], plugin: str) -> list[str]:
        if self.cluster:
            from labkit.runtime.k8s_errors import ClusterError

            try:
                return list(self.lab.runtime.restart(names))
            except ClusterError as exc:
                raise PluginError(
                    f"{exc}\n(restarting for plugin {plugin}: if a pod cannot load it, "
                    f"lab.logs(NAME) says which line; lab.remove_code({plugin!r}) takes it "
                    "away)") from None
        from labkit.runtime.local import PluginFailed

        try:
            return list(self.lab.runtime.restart(names))
        except PluginFailed as exc:
            raise PluginError(f"{exc} (a service could not load plugin {plugin})") from None
