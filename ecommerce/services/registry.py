"""Every process the lab runs: its entrypoint, the settings it reads, and whom it calls.

This table is the contract between the code, the Kubernetes manifests and the local runtime:
manifests must start exactly these entrypoints with these environment variables, and
NetworkPolicies must allow exactly these call paths (tests check all three).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecommerce.domain.saga import PARTICIPANTS as ORDER_SAGA_PARTICIPANTS
from ecommerce.plugins import PLUGINS_ENV

#: Port every HTTP service listens on inside its container (LABKIT_PORT).
CONTAINER_PORT = 8080
#: Port every ClusterIP Service exposes (the course's curl commands use port 80).
SERVICE_PORT = 80

COMMON_ENV = ("LABKIT_HOST", "LABKIT_PORT")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    #: `python -m <module> <args...>` starts it.
    module: str
    args: tuple[str, ...] = ()
    #: True: an HTTP server with /healthz and /readyz. False: a worker or job.
    http: bool = True
    #: A worker whose long-running (`--follow`) variant serves only /healthz and /readyz on
    #: LABKIT_HOST:LABKIT_PORT (`ecommerce.health`): probes for its Deployment, no Service.
    probes: bool = False
    #: Which databases it opens: "events" (PostgreSQL / SQLite), "read" (Redis / SQLite).
    stores: tuple[str, ...] = ("events",)
    #: Services it calls over HTTP (each read from LABKIT_<NAME>_URL).
    calls: tuple[str, ...] = ()
    #: Route prefixes the gateway sends to it.
    routes: tuple[str, ...] = ()
    #: Fault injection endpoints (/faults) when LABKIT_FAULTS=1.
    faults: bool = False
    #: Reads LABKIT_ADMIN_TOKEN: admin commands (`/admin/...`) and who may arm /faults.
    admin: bool = False
    extra_env: tuple[str, ...] = field(default=())

    @property
    def command(self) -> list[str]:
        return ["python", "-m", self.module, *self.args]

    def env_for(self, follower: bool) -> tuple[str, ...]:
        """`env`, plus where the probes listen for the follow variant of a `probes` worker."""
        return (*COMMON_ENV, *self.env) if follower and self.probes else self.env

    @property
    def env(self) -> tuple[str, ...]:
        """Every LABKIT_* variable this process reads."""
        names: list[str] = list(COMMON_ENV) if self.http else []
        if "events" in self.stores:
            names.append("LABKIT_PG_URL")
        if "read" in self.stores:
            names.append("LABKIT_REDIS_URL")
        names += ["LABKIT_" + c.upper().replace("-", "_") + "_URL" for c in self.calls]
        if self.faults:
            names.append("LABKIT_FAULTS")
        if self.admin:
            names.append("LABKIT_ADMIN_TOKEN")
        names += list(self.extra_env)
        names.append(PLUGINS_ENV)  # every process loads the deployed plugins at start
        return tuple(names)


#: The saga's participants, from the saga's definition (`ecommerce.domain.saga.ORDER_SAGA`).
PARTICIPANTS = ORDER_SAGA_PARTICIPANTS

SERVICES: dict[str, ServiceSpec] = {
    s.name: s
    for s in [
        ServiceSpec("user-service", "ecommerce.services.user", routes=("/api/users",), faults=True,
                    admin=True, calls=("command-service",)),
        ServiceSpec("order-service", "ecommerce.services.order", routes=("/api/orders",), faults=True,
                    admin=True),
        ServiceSpec("inventory-service", "ecommerce.services.inventory",
                    routes=("/api/inventory",), faults=True, admin=True),
        ServiceSpec("payment-service", "ecommerce.services.payment",
                    routes=("/api/payments",), faults=True, admin=True),
        # LABKIT_FAULTS: place-order accepts the crash scenario's `crash_after` only when set.
        ServiceSpec("command-service", "ecommerce.services.command", routes=("/api/commands",),
                    extra_env=("LABKIT_FAULTS",)),
        ServiceSpec("query-service", "ecommerce.services.query", stores=("read",),
                    routes=("/api/queries",)),
        ServiceSpec("event-store-api", "ecommerce.services.eventstore_api",
                    stores=("events", "read"), routes=("/api/events",)),
        ServiceSpec("event-processor", "ecommerce.projections.processor", ("--follow",), http=False,
                    probes=True, stores=("events", "read")),
        ServiceSpec("saga-orchestrator", "ecommerce.saga", ("run", "--follow"), http=False,
                    probes=True, calls=PARTICIPANTS),
    ]
}

#: One-shot processes that run only on request (a suspended Kubernetes Job in the manifests,
#: `lab.run_job(...)` starts a copy); the local runtime does not start them with the lab.
TASKS: dict[str, ServiceSpec] = {
    s.name: s
    for s in [
        ServiceSpec("event-replay", "ecommerce.projections.replay", ("--all",), http=False,
                    stores=("events", "read")),
    ]
}
