"""`Lab`: the one object notebooks use. `lab = labkit.connect()`.

The mode comes from LABKIT_MODE (`local`, the default: processes on this machine; `cluster`:
the Kubernetes cluster of the current kubeconfig). Every method works the same in both modes,
so no notebook changes to switch.
"""

from __future__ import annotations

import numbers
import time
from typing import TYPE_CHECKING, Any

import httpx

from ecommerce.config import Settings
from ecommerce.store.base import MAX_INT64
from ecommerce.waiting import WaitTimeout, wait_until
from labkit.lab.counts import check_count
from labkit.ops.admin_client import segment
from labkit.ops.refusal import refusal
from labkit.ops.unreachable import unreachable

if TYPE_CHECKING:
    import pandas as pd

    from labkit.runtime.cluster import ClusterRuntime
    from labkit.runtime.local import LocalRuntime
    from labkit.runtime.protocol import Runtime


class LabError(RuntimeError):
    """A lab operation failed; the message says what to do."""


class Lab:
    def __init__(self, settings: Settings | None = None, *, gateway_port: int | None = None
                 ) -> None:
        """`gateway_port` (local mode): the local gateway's port; None reads
        LABKIT_GATEWAY_PORT (default 8080), 0 takes any free port (temporary labs, tests)."""
        self.settings = settings or Settings.from_env()
        self.mode = self.settings.mode
        if self.mode == "cluster":
            from labkit.runtime.cluster import ClusterRuntime

            #: Where the lab runs (`labkit.runtime.protocol.Runtime`): processes or a cluster.
            self.runtime: Runtime = ClusterRuntime(namespace=self.settings.namespace)
        else:
            from labkit.runtime.local import LocalRuntime

            self.runtime = LocalRuntime(self.settings, gateway_port=gateway_port)
        self._clients: dict[str, httpx.Client] = {}
        if self.mode == "local":
            # The deployed plugins' saga steps and upcasters apply to what this process does
            # too (lab.saga.place_order starts sagas here).
            from labkit.lab.plugins import Plugins

            Plugins(self).load_here()

    def __repr__(self) -> str:
        where = self.settings.namespace if self.mode == "cluster" else str(self.settings.data_dir)
        return f"<Lab mode={self.mode} at {where}>"

    # ---- lifecycle -------------------------------------------------------------------------
    def up(self, step: str | None = None, *, wait: bool = True, progress: bool = True,
           faults: bool | None = None) -> pd.DataFrame:
        """Start (or restart what is down) and wait until every service is ready.

        `step` (`"02-saga"`, or `"02"`): start that step and the ones before it, as the course
        builds the system up (00-base, 01-networking, 02-saga, 03-cqrs, 04-event-sourcing); in
        cluster mode, apply just those steps' manifests. Returns the status of what those steps
        run (every step when `step` is None), with a `step` column.

        `faults=True`: fault injection on (`lab.faults`, the failure scenarios), `False`: off
        (the participants are restarted if they run the other way); None keeps what runs (a
        new lab: off, unless LABKIT_FAULTS=1). In cluster mode it is the
        manifests/components/faults change.
        """
        from labkit.runtime.steps import UnknownStep, up_to

        if faults is not None and not isinstance(faults, bool):
            raise LabError(f"faults must be True (fault injection on), False (off) or None (keep "
                           f"what runs); got {faults!r}")
        try:
            steps = up_to(step)
        except UnknownStep as exc:
            raise LabError(str(exc)) from None
        challenge = self._active_challenge()
        try:
            if self.mode == "cluster":
                cluster = self.cluster_runtime("lab.up")
                cluster.progress = progress
                if faults is not None:
                    cluster.faults = faults
                cluster.up(steps if step is not None else None, wait=wait)
            else:
                self.local_runtime("lab.up").up(wait=wait, progress=progress, step=step,
                                                faults=faults)
        except Exception as exc:
            if challenge is None:
                raise
            try:  # the same error, with the challenge named (it may be why)
                named = type(exc)(f"{exc}\n{challenge}")
            except Exception:  # an exception type that takes other arguments: as it was
                raise exc from None
            raise named from None
        if challenge is not None and progress:
            print(f"⚠️ {challenge}")
        if step is None:
            return self.status()
        import pandas as pd

        rows = self.runtime.status()
        if self.mode == "local":  # 00-base's databases: files or servers, no process
            rows = self.local_runtime("lab.up").database_rows() + rows
        df = pd.DataFrame([r for r in rows if r.get("step") in steps])
        return df[["step", *[c for c in df.columns if c != "step"]]] if len(df) else df

    def down(self) -> list[str]:
        """Stop exactly what the lab started. Idempotent."""
        self.close()
        return self.runtime.down()

    def reset(self) -> None:
        """Stop everything and delete the lab's data (events, read models, logs)."""
        self.close()
        if self.mode == "local":
            self.local_runtime("lab.reset").reset()
        else:
            self.runtime.down()

    def status(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.runtime.status())
        if "step" in df.columns:  # first: the course's step each part belongs to
            df = df[["step", *[c for c in df.columns if c != "step"]]]
        return df

    def url(self, name: str) -> str:
        """A service's base URL; `"gateway"`: the single entry point (local: the local
        gateway on 127.0.0.1:8080; cluster: the Gateway's address)."""
        return self.runtime.url(name)

    def urls(self) -> dict[str, str]:
        """Every address you can reach now: the gateway first, then each running service
        (local mode). In cluster mode only the gateway: services are reached through it or
        through port-forwards that live as long as this process."""
        from ecommerce.services.registry import SERVICES

        out: dict[str, str] = {}
        names = ["gateway"] + ([n for n, s in SERVICES.items() if s.http]
                               if self.mode == "local" else [])
        for name in names:
            try:
                out[name] = self.url(name)
            except Exception:
                continue
        return out

    def trace(self, method: str, path: str, host: str | None = None, body: Any = None
              ) -> dict[str, Any]:
        """One request through the gateway and the way it went: route matched, backend,
        upstream path, status, ms, answer. E.g. `lab.trace("GET", "/api/users", "api.local")`."""
        from labkit.lab.trace import trace

        return trace(self, method, path, host, body)

    def rewrite_target(self, target: str | None = "/") -> pd.DataFrame:
        """Restart the local gateway with the course's
        `nginx.ingress.kubernetes.io/rewrite-target: <target>` on its Ingress rules (requests
        with `Host: api.local`), or without it (`None`): to see what the annotation breaks."""
        if self.mode != "local":
            raise LabError("cluster mode: add the annotation to the Ingress in "
                           "manifests/01-networking/ingress.yaml and apply it; this lab's cluster "
                           "routes through the Gateway (HTTPRoute), which has no such annotation")
        if target is not None and not (isinstance(target, str) and target.startswith("/")):
            raise LabError(f"the rewrite target is a path starting with '/' (e.g. \"/\"), or None "
                           f"for no annotation; got {target!r}")
        import pandas as pd

        self.close()
        return pd.DataFrame([self.local_runtime("lab.rewrite_target").restart_gateway(target)])

    def restart(self, name: str) -> pd.DataFrame:
        """Restart one process as it is deployed (the manifests, plus any change deployed on
        top, e.g. by a challenge), like `kubectl rollout restart`; its status row."""
        import pandas as pd

        if self.mode != "local":
            raise LabError(f"cluster mode: `kubectl -n {self.settings.namespace} rollout "
                           f"restart deployment/{name}`")
        self.close()
        return pd.DataFrame([self.local_runtime("lab.restart").restart_one(name)])

    def rollback(self, name: str) -> pd.DataFrame:
        """Undo a change deployed on top of the manifests for one process (`labkit status`
        shows it in DETAIL) and restart it as the manifests say, like `kubectl rollout undo`."""
        import pandas as pd

        if self.mode != "local":
            raise LabError(f"cluster mode: `kubectl -n {self.settings.namespace} rollout undo "
                           f"deployment/{name}`, or apply its manifest again")
        local = self.local_runtime("lab.rollback")
        if not local.clear_override(name):
            raise LabError(f"{name} runs as the manifests say already: nothing to roll back "
                           "(`labkit status` shows changes in DETAIL)")
        self.close()
        return pd.DataFrame([local.restart_one(name)])

    def http(self, name: str) -> httpx.Client:
        """An HTTP client whose base URL is the service (same code in both modes); `"gateway"`:
        the entry point (in cluster mode it sends the course's `Host: api.local`)."""
        base = self.url(name)
        client = self._clients.get(name)
        if client is None or str(client.base_url).rstrip("/") != base:
            client = httpx.Client(base_url=base, timeout=10.0)
            self._clients[name] = client
        return client

    def logs(self, name: str, tail: int = 200) -> str:
        """A process's last `tail` log lines (JSON lines)."""
        check_count("tail", tail, "lines", error=LabError)
        return self.runtime.logs(name, tail=tail)

    def kill(self, name: str) -> Any:
        """Kill a service's process (local) or pods (cluster): for crash scenarios."""
        return self.runtime.kill(name)

    def run_job(self, name: str) -> str:
        """Run a one-shot Job to completion (event-processor, event-replay, saga-orchestrator),
        like `kubectl create job --from=cronjob/<name>`. Returns its output."""
        if self.mode == "cluster":
            return self.cluster_runtime("lab.run_job").run_job(name)
        done = self.local_runtime("lab.run_job").run_task(name)
        if done.returncode != 0:
            raise LabError(f"{name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def local_runtime(self, doing: str) -> LocalRuntime:
        """The runtime as the local one, for what only local mode has."""
        from labkit.runtime.local import LocalRuntime

        if not isinstance(self.runtime, LocalRuntime):
            raise LabError(f"{doing} needs local mode (LABKIT_MODE=local); this lab runs on a "
                           "cluster: use kubectl for it there")
        return self.runtime

    def cluster_runtime(self, doing: str) -> ClusterRuntime:
        """The runtime as the cluster one, for what only cluster mode has."""
        from labkit.runtime.cluster import ClusterRuntime

        if not isinstance(self.runtime, ClusterRuntime):
            raise LabError(f"{doing} needs cluster mode (LABKIT_MODE=cluster); this lab runs "
                           "as local processes")
        return self.runtime

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # ---- the system ----------------------------------------------------------------------------
    def _send(self, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request to a service; a service that does not answer is a LabError that says
        which one and how to start it."""
        client = self.http(service)
        try:
            return client.request(method, path, **kw)
        except httpx.TransportError as exc:
            url = str(client.base_url.join(path))
            raise LabError(unreachable(service, url, exc)) from None

    def _call(self, service: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return self._answer(service, method, path, self._send(service, method, path, **kw))

    @staticmethod
    def _answer(service: str, method: str, path: str, response: httpx.Response) -> Any:
        """The answer's JSON; an error answer is a LabError with the service's own words."""
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text}
        if response.status_code >= 400:
            raise LabError(f"{service} {method} {path} -> {response.status_code}: "
                           f"{refusal(body)}")
        return body

    def _named(self, kind: str, service: str, method: str, prefix: str, name: str,
               **kw: Any) -> dict[str, Any]:
        """A command or query by name; a name the service does not serve says which it does."""
        response = self._send(service, method, prefix + name, **kw)
        if response.status_code == 404 and _no_route(response):
            names = ", ".join(self._served(service, method, prefix))
            raise LabError(f"{service} has no {kind} {name!r}: use one of {names}")
        return self._answer(service, method, prefix + name, response)

    def _served(self, service: str, method: str, prefix: str) -> list[str]:
        """The names the service serves under `prefix` with `method`, from its own OpenAPI."""
        paths = self._call(service, "GET", "/openapi.json").get("paths", {})
        return sorted(p.removeprefix(prefix) for p, ops in paths.items()
                      if p.startswith(prefix) and method.lower() in ops)

    def command(self, name: str, /, **body: Any) -> dict[str, Any]:
        """Send a CQRS command, e.g. `lab.command("create-user", name="Kim", email=...)`."""
        return self._named("command", "command-service", "POST", "/api/commands/", name,
                           json=body)

    def query(self, name: str, /, **params: Any) -> dict[str, Any]:
        """Ask the read side, e.g. `lab.query("users")`, `lab.query("user-stats")`."""
        return self._named("query", "query-service", "GET", "/api/queries/", name,
                           params=params)

    def _processor_says(self) -> str:
        """Why the read side may be behind, as event-processor's status row says it."""
        try:
            row = next((r for r in self.runtime.status() if r["service"] == "event-processor"),
                       None)
        except Exception:  # the status itself failed: the generic question will do
            row = None
        if row is None or (row.get("status") in ("ready", "running") and not row.get("detail")):
            return "is the event-processor running? (lab.status())"
        detail = f": {row['detail']}" if row.get("detail") else ""
        return f"event-processor is {row.get('status')}{detail}"

    def wait_for_projection(self, position: int, projection: str = "users",
                            timeout: float = 10.0) -> float:
        """Wait until the read side has applied `position`; return the seconds waited."""
        self._check_projection(projection)
        return self._wait_applied(position, projection, timeout)

    def _wait_applied(self, position: int, projection: str, timeout: float = 10.0) -> float:
        def applied() -> bool:
            cps = self.query("checkpoints")["checkpoints"]
            return bool(cps.get(projection, {}).get("position", 0) >= position)

        started = time.perf_counter()
        try:
            wait_until(applied, timeout=timeout, what=f"projection {projection!r}")
        except WaitTimeout:
            raise LabError(f"projection {projection!r} did not reach position {position} in "
                           f"{timeout}s: {self._processor_says()}") from None
        return time.perf_counter() - started

    def _check_projection(self, projection: str) -> None:
        """Refuse a projection the lab does not run (before anything waits for it)."""
        from ecommerce.projections import all_projections

        known = {*self.query("checkpoints")["checkpoints"], *all_projections()}
        if projection not in known:
            raise LabError(f"unknown projection {projection!r}; the lab runs "
                           f"{', '.join(sorted(known))} (lab.checkpoints())")

    def events(self, after: int = 0, limit: int = 1000, *, stream: str | None = None,
               category: str | None = None, type: str | None = None) -> pd.DataFrame:
        """The global log (or one stream) as a DataFrame, from event-store-api."""
        import pandas as pd

        params: dict[str, Any] = {"after": after, "limit": min(limit, 1000)}
        for k, v in (("stream", stream), ("category", category), ("type", type)):
            if v:
                params[k] = v
        rows: list[dict[str, Any]] = []
        while len(rows) < limit:
            page = self._call("event-store-api", "GET", "/api/events", params=params)
            rows += page["events"]
            if not page["events"] or len(page["events"]) < params["limit"]:
                break
            params["after"] = page["next_after"]
        columns = ["position", "stream_id", "version", "event_type", "schema_version", "data",
                   "metadata", "recorded_at", "event_id"]
        df = pd.DataFrame(rows[:limit], columns=columns)
        if not df.empty:
            # ISO8601, not a format inferred from the first row: a stamp written before
            # iso_utc() may lack its microseconds (isoformat() drops a zero one).
            df["recorded_at"] = pd.to_datetime(df["recorded_at"], utc=True, format="ISO8601")
        return df

    def stream(self, stream_id: str, *, raw: bool = False) -> list[dict[str, Any]]:
        """A stream's events, upcast to the current schema versions; `raw=True`: exactly as
        stored in the log (on any backend: SQLite, PostgreSQL, a cluster)."""
        return self._call("event-store-api", "GET",
                          f"/api/events/streams/{segment(stream_id)}",
                          params={"raw": "true"} if raw else None)["events"]

    def replay(self, projections: list[str] | None = None) -> dict[str, Any]:
        """Rebuild the read models from the whole log, beside the live ones, then swap them in
        (queries never see an empty model); returns events/s."""
        body = {"projections": projections} if projections else None
        return self._call("event-store-api", "POST", "/api/events/replay", json=body)

    def checkpoints(self) -> pd.DataFrame:
        """Each projection's checkpoint next to the head of the log: how far behind is it?

        Only the projections the processor runs now (the lab's own and the deployed plugins'):
        a removed plugin's checkpoint stays in the read store but nothing advances it any more,
        so it is not "behind" (query-service lists it under `paused`)."""
        import pandas as pd

        cps = self.query("checkpoints")["checkpoints"]
        head = self._call("event-store-api", "GET", "/api/events",
                          params={"limit": 1})["last_position"]
        rows = [{"projection": name, "position": cp["position"], "head": head,
                 "behind": head - cp["position"], "last_updated": cp["last_updated"]}
                for name, cp in sorted(cps.items())]
        return pd.DataFrame(rows, columns=["projection", "position", "head", "behind",
                                           "last_updated"])

    def projection_lag(self, commands: int = 20, projection: str = "users") -> pd.DataFrame:
        """Send `commands` create-user commands one by one and measure, for each, how long
        until query-service shows it: the eventual consistency of CQRS, in milliseconds."""
        import pandas as pd

        self._check_projection(projection)
        rows = []
        for i in range(commands):
            sent = time.perf_counter()
            accepted = self.command("create-user", name=f"Lag probe {i}",
                                    email=f"lag{i}.{time.time_ns()}@example.com")
            acked = time.perf_counter()
            self._wait_applied(accepted["position"], projection)
            seen = time.perf_counter()
            rows.append({"command": i + 1, "position": accepted["position"],
                         "command_ms": (acked - sent) * 1000, "lag_ms": (seen - acked) * 1000})
        return pd.DataFrame(rows)

    def user_at(self, user_id: str, position: int | None = None) -> dict[str, Any]:
        """Time travel: a user's state folded from its events up to global `position`."""
        from ecommerce.domain import users
        from ecommerce.domain.events import RecordedEvent

        events = [RecordedEvent(e["event_id"], e["stream_id"], e["version"], e["position"],
                                e["event_type"], e["schema_version"], e["data"], e["metadata"],
                                e["recorded_at"])
                  for e in self.stream(users.stream_id(user_id))
                  if position is None or e["position"] <= position]
        return users.fold(user_id, events).as_dict()

    def accounts(self) -> pd.DataFrame:
        """Account balances from payment-service."""
        import pandas as pd

        body = self._call("payment-service", "GET", "/api/payments/accounts")
        return pd.DataFrame(body.get("accounts", body if isinstance(body, list) else []))

    def stock(self) -> pd.DataFrame:
        """Stock per SKU from inventory-service."""
        import pandas as pd

        return pd.DataFrame(self._call("inventory-service", "GET", "/api/inventory")["items"])

    def orders(self) -> pd.DataFrame:
        """Orders from order-service (the write side's own view)."""
        import pandas as pd

        body = self._call("order-service", "GET", "/api/orders")
        return pd.DataFrame(body.get("orders", []))

    def routes(self) -> pd.DataFrame:
        """The route table, with the URL each route takes in this mode (through the gateway)."""
        import pandas as pd

        from labkit.lab.topology import manifest_routes, routes

        declared = manifest_routes()
        try:
            entry = self.url("gateway")
        except Exception:  # no gateway yet (before 01-networking): the services' own URLs
            entry = None
        rows = []
        for r in routes():
            try:
                target = (entry or self.url(r["service"])) + r["path"]
            except Exception:
                target = None
            rows.append({**r, "httproute": declared["httproute"].get(r["path"]),
                         "ingress": declared["ingress"].get(r["path"]), "url": target})
        return pd.DataFrame(rows)

    def doctor(self) -> pd.DataFrame:
        """Python, packages, mode, data directory; in cluster mode also kubeconfig, API
        server, namespace permissions, Gateway API CRDs and the image on the nodes."""
        import pandas as pd

        from labkit.ops.doctor import doctor

        return pd.DataFrame(doctor(self.settings, self.runtime))

    def admin_token(self) -> str | None:
        """The token of the admin commands and /faults: LABKIT_ADMIN_TOKEN, else (local mode)
        the data directory's own, else (cluster mode) the Secret labkit-admin if you may read
        it; None: admin is off here."""
        if self.settings.admin_token:
            return self.settings.admin_token
        token = getattr(self.runtime, "admin_token", None)
        try:
            return token() if token is not None else None
        except Exception:
            return None

    @property
    def admin(self) -> Any:
        """Admin commands (`lab.admin.fund("alice", 100_000)`, `lab.admin.restock(...)`): the
        operator's, not routed by the gateway, off unless the lab has an admin token."""
        from labkit.ops.admin_client import Admin

        return Admin(self.url, self.admin_token())

    @property
    def faults(self) -> Any:
        from labkit.ops.fault_client import Faults

        return Faults(self.url, token=self.admin_token())

    @property
    def saga(self) -> Any:
        from labkit.lab.saga_client import SagaClient

        return SagaClient(self)

    def _active_challenge(self) -> str | None:
        """A sentence when a challenge (which breaks the lab on purpose) is active, else None."""
        try:
            state = self.challenge.active()
        except Exception:  # no data directory yet, unreadable state: no challenge to name
            return None
        if state is None or state.get("solved_at"):
            return None
        return (f"challenge {state['name']} is active: it breaks the lab on purpose until you "
                "fix it (lab.challenge.hint(), lab.challenge.check()) or give up "
                "(lab.challenge.give_up(), which repairs the lab)")

    @property
    def challenge(self) -> Any:
        """Challenge mode: `lab.challenge.start("stuck-saga")`, `.hint()`, `.check()`,
        `.give_up()`, `.table()` (the same active challenge as `labkit challenge`)."""
        from labkit.lab.challenges import ChallengeClient

        return ChallengeClient(self)

    def park_event(self, position: int, reason: str) -> dict[str, Any]:
        """Park a poison event: the projector skips it when a projection fails on it (the
        decision is an `EventParked` event in the log; `labkit events park`)."""
        from ecommerce.projections.parking import park

        if (isinstance(position, bool) or not isinstance(position, numbers.Integral)
                or not 1 <= position <= MAX_INT64):
            raise LabError(f"position is an event's position in the log, a whole number from 1 "
                           f"to {MAX_INT64} (lab.events() lists them); got {position!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise LabError("say why the event is parked, as text for whoever reads the log next: "
                           f"lab.park_event({position}, \"the users projection fails on it\")")
        try:
            return park(self.saga.store, int(position), reason, by="lab.park_event")
        except ValueError as exc:
            raise LabError(str(exc)) from None

    # ---- student code in the running system (labkit.lab.plugins, ecommerce.plugins) ---------
    def deploy_code(self, code: Any, name: str | None = None,
                    restart: Any = None) -> dict[str, Any]:
        """Deploy a plugin: `code` is a function whose body registers things
        (`from ecommerce.plugins import projection, saga_step, upcaster, handler`) or Python
        source; it is loaded here first (a failure says which line), written to the plugin
        directory, and the processes that use it are restarted. See `labkit.lab.plugins`."""
        from labkit.lab.plugins import Plugins

        return Plugins(self).deploy(code, name, restart)

    def remove_code(self, name: str, restart: Any = None) -> dict[str, Any]:
        """Remove plugin `name` and restart the processes that used it."""
        from labkit.lab.plugins import Plugins

        return Plugins(self).remove(name, restart)

    def plugins(self) -> pd.DataFrame:
        """The plugins loaded in this notebook (and deployed): what each registers."""
        from labkit.lab.plugins import Plugins

        return Plugins(self).table()

    def fire(self, scenario: str, **options: Any) -> str:
        """Fire a named saga scenario (`happy`, `payment-declined`, ...); returns the saga id."""
        from labkit.lab.scenarios import fire

        return fire(self, scenario, **options)


def _no_route(response: httpx.Response) -> bool:
    """A 404 for a path the service has no route for (not for an unknown id)."""
    try:
        return bool(response.json().get("detail") == "Not Found")
    except (ValueError, AttributeError):
        return False


def connect(mode: str | None = None) -> Lab:
    """The lab for this notebook: mode from `mode`, else LABKIT_MODE (default `local`)."""
    settings = Settings.from_env()
    if mode is not None:
        if mode not in ("local", "cluster"):
            raise ValueError("mode must be 'local' or 'cluster'")
        from dataclasses import replace

        settings = replace(settings, mode=mode)
    return Lab(settings)
