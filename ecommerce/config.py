"""Settings from `LABKIT_*` environment variables: the same names in a container and locally.

| variable | meaning | default |
|---|---|---|
| LABKIT_MODE | `local` (processes on 127.0.0.1) or `cluster` (Kubernetes) | local |
| LABKIT_DATA_DIR | where the local runtime keeps databases, logs and pids | <repo>/.labkit |
| LABKIT_PG_URL | PostgreSQL event store (`postgresql://...`); unset: SQLite | unset |
| LABKIT_REDIS_URL | Redis read store (`redis://...`); unset: SQLite | unset |
| LABKIT_EVENTS_DB | SQLite event store file | <data dir>/events.db |
| LABKIT_READ_DB | SQLite read store file | <data dir>/read.db |
| LABKIT_PG_SCHEMA | PostgreSQL schema holding the event tables | labkit |
| LABKIT_REDIS_PREFIX | prefix of every Redis key the read store writes | labkit |
| LABKIT_SQLITE_SYNCHRONOUS | SQLite `synchronous` pragma: NORMAL or FULL | NORMAL |
| LABKIT_PG_SYNCHRONOUS_COMMIT | PostgreSQL `synchronous_commit`: off, on, server (its own) | off |
| LABKIT_HOST / LABKIT_PORT | where a service listens | 0.0.0.0 / 8080 |
| LABKIT_<SERVICE>_URL | a peer's base URL, e.g. LABKIT_PAYMENT_SERVICE_URL | cluster DNS name |
| LABKIT_FAULTS | `1` enables the /faults endpoints (and place-order's `crash_after`) | 0 |
| LABKIT_ADMIN_TOKEN | enables the admin commands (`/admin/...`) for `X-Labkit-Admin-Token` | unset |
| LABKIT_NAMESPACE | Kubernetes namespace of the lab | ecommerce-microservices |
| LABKIT_IMAGE | the lab's container image, applied in place of the manifests' tag | labkit:<version> |
| LABKIT_GATEWAY_CLASS | GatewayClass of the Gateway (`eg`: Envoy Gateway) | cloud-provider-kind |
| LABKIT_REQUIRE_SERVERS | `1`: tests fail, not skip, when PostgreSQL/Redis are absent | 0 |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_NAMESPACE = "ecommerce-microservices"
#: LABKIT_PG_SYNCHRONOUS_COMMIT values ("server": keep the server's `synchronous_commit`).
PG_SYNCHRONOUS_COMMIT = ("server", "on", "off")
PACKAGE_DIR = Path(__file__).resolve().parent
#: The repository checkout (holds manifests/ and notebooks/) when running from source.
REPO_DIR = PACKAGE_DIR.parent


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def default_data_dir() -> Path:
    explicit = _env("LABKIT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    if (REPO_DIR / "pyproject.toml").exists():
        return REPO_DIR / ".labkit"
    return Path.cwd() / ".labkit"


def service_url_var(service: str) -> str:
    """`payment-service` -> `LABKIT_PAYMENT_SERVICE_URL`."""
    return "LABKIT_" + service.upper().replace("-", "_") + "_URL"


@dataclass(frozen=True)
class Settings:
    mode: str
    data_dir: Path
    pg_url: str | None
    redis_url: str | None
    events_db: Path
    read_db: Path
    pg_schema: str
    redis_prefix: str
    sqlite_synchronous: str
    #: "off" (the lab's default, like SQLite's NORMAL), "on", or "server": leave the server's.
    pg_synchronous_commit: str
    host: str
    port: int
    faults: bool
    namespace: str
    #: The admin commands' token (LABKIT_ADMIN_TOKEN); None: they are off.
    admin_token: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = default_data_dir()
        mode = (_env("LABKIT_MODE", "local") or "local").lower()
        if mode not in ("local", "cluster"):
            raise ValueError(f"LABKIT_MODE must be 'local' or 'cluster'; got {mode!r}")
        sync = (_env("LABKIT_SQLITE_SYNCHRONOUS", "NORMAL") or "NORMAL").upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"LABKIT_SQLITE_SYNCHRONOUS must be NORMAL or FULL; got {sync!r}")
        commit = (_env("LABKIT_PG_SYNCHRONOUS_COMMIT", "off") or "off").lower()
        if commit not in PG_SYNCHRONOUS_COMMIT:
            raise ValueError(f"LABKIT_PG_SYNCHRONOUS_COMMIT must be one of "
                             f"{', '.join(PG_SYNCHRONOUS_COMMIT)}; got {commit!r}")
        port_text = _env("LABKIT_PORT", "8080") or "8080"
        if not port_text.isdigit():
            raise ValueError(f"LABKIT_PORT must be a port number; got {port_text!r}")
        return cls(
            mode=mode,
            data_dir=data_dir,
            pg_url=_env("LABKIT_PG_URL"),
            redis_url=_env("LABKIT_REDIS_URL"),
            events_db=Path(_env("LABKIT_EVENTS_DB") or data_dir / "events.db"),
            read_db=Path(_env("LABKIT_READ_DB") or data_dir / "read.db"),
            pg_schema=_env("LABKIT_PG_SCHEMA", "labkit") or "labkit",
            redis_prefix=_env("LABKIT_REDIS_PREFIX", "labkit") or "labkit",
            sqlite_synchronous=sync,
            pg_synchronous_commit=commit,
            host=_env("LABKIT_HOST", "0.0.0.0") or "0.0.0.0",
            port=int(port_text),
            faults=_env("LABKIT_FAULTS", "0") == "1",
            namespace=_env("LABKIT_NAMESPACE", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE,
            admin_token=_env("LABKIT_ADMIN_TOKEN") or None,
        )

    def peer_url(self, service: str) -> str:
        """A peer's base URL: `LABKIT_<SERVICE>_URL`, else its in-cluster DNS name."""
        explicit = _env(service_url_var(service))
        if explicit:
            return explicit.rstrip("/")
        return f"http://{service}.{self.namespace}.svc.cluster.local"


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
