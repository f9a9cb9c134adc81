"""Admin commands: what only the lab's operator may do (put money into an account, restock).

They create money or stock from outside the system, so no participant of the saga and no
student-facing route may do them. They are:

- off unless `LABKIT_ADMIN_TOKEN` is set: then their routes do not exist (404);
- under `/admin/...`, a prefix the Gateway, the Ingress and the local gateway never route: a
  caller reaches them only at the service itself (locally its port; in a cluster a port-forward
  or a pod the NetworkPolicies let in);
- allowed only with the header `X-Labkit-Admin-Token: <token>` (403 `admin_token_invalid`
  otherwise). In a cluster the token comes from the Secret `labkit-admin` (key `token`); the
  local runtime makes one per data directory (`<data dir>/admin-token`).

Each one is recorded as an event in the service's own stream, like any other change.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header

from ecommerce.config import Settings
from ecommerce.services.app import ApiError

ADMIN_HEADER = "X-Labkit-Admin-Token"
ADMIN_PREFIX = "/admin"

AdminToken = Annotated[str | None, Header(alias=ADMIN_HEADER, max_length=200, pattern=r"^[!-~]+$",
                                          description="the lab's admin token (LABKIT_ADMIN_TOKEN)")]


def admin_guard(settings: Settings) -> Callable[..., None]:
    """A FastAPI dependency that lets a request through only with the right token."""

    def guard(token: AdminToken = None) -> None:
        expected = settings.admin_token or ""
        if not expected or not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise ApiError(403, "admin_token_invalid",
                           f"admin commands need the header {ADMIN_HEADER} with the lab's admin "
                           "token (LABKIT_ADMIN_TOKEN; in a cluster the Secret labkit-admin)")

    return guard


def admin_dependencies(settings: Settings) -> list:
    return [Depends(admin_guard(settings))]


def admin_enabled(settings: Settings) -> bool:
    return bool(settings.admin_token)
