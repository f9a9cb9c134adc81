"""The admin commands from Python: `lab.admin.fund("alice", 100_000)`, `lab.admin.restock(...)`.

They put money into an account and units into the warehouse: what a scenario needs before it
runs, so that notebooks re-run on the same data forever (`labkit.lab.scenarios`). They go to
the service itself, never through the gateway (which does not route `/admin/...`), with the
lab's admin token (`ecommerce.services.admin`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from ecommerce.domain.orders import ID_PATTERN
from ecommerce.services.admin import ADMIN_HEADER, ADMIN_PREFIX
from labkit.ops.refusal import refusal
from labkit.ops.unreachable import unreachable


class AdminError(RuntimeError):
    """An admin command failed; the message says what to do."""


def segment(value: Any) -> str:
    """`value` as one URL path segment: percent-encoded, so that `a/b`, `a?x=1` or `a#b` reach
    the service as the id they are and it answers for that id."""
    return quote(str(value), safe="")


class Admin:
    def __init__(self, url_of: Callable[[str], str], token: str | None, *,
                 timeout: float = 10.0) -> None:
        self._url_of, self._token, self._timeout = url_of, token, timeout

    @property
    def enabled(self) -> bool:
        return bool(self._token)

    def _post(self, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self._token:
            raise AdminError("admin commands are off in this lab: set LABKIT_ADMIN_TOKEN (in a "
                             "cluster: the token of the Secret labkit-admin; see README)")
        url = self._url_of(service).rstrip("/") + ADMIN_PREFIX + path
        try:
            r = httpx.post(url, json=body, headers={ADMIN_HEADER: self._token},
                           timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise AdminError(unreachable(service, url, exc)) from None
        try:
            answer = r.json()
        except ValueError:
            answer = {"detail": r.text}
        if r.status_code == 404 and not self._has_admin_routes(service):
            raise AdminError(f"{service} has no admin commands: it runs without an admin token "
                             "(restart the lab: lab.down(), lab.up())")
        if r.status_code >= 400:
            raise AdminError(f"{service} refused {ADMIN_PREFIX}{path} ({r.status_code}): "
                             f"{refusal(answer)}")
        return answer

    def _has_admin_routes(self, service: str) -> bool:
        """Whether the service serves admin commands at all (its OpenAPI lists them): a 404
        without them means admin is off there, with them it is the service's answer for this
        id (an unknown SKU, an id that is no path segment)."""
        url = self._url_of(service).rstrip("/") + "/openapi.json"
        try:
            paths = httpx.get(url, timeout=self._timeout).json().get("paths", {})
        except (httpx.HTTPError, ValueError, AttributeError):
            return True  # cannot tell: show the service's own answer
        return any(p.startswith(ADMIN_PREFIX + "/") for p in paths)

    def fund(self, account_id: str, amount: int) -> dict[str, Any]:
        """Put `amount` cents into the account (opened if needed): `AccountFunded`."""
        if not isinstance(account_id, str) or not re.fullmatch(ID_PATTERN, account_id):
            raise AdminError(f"account_id is an account's id like \"alice\" (letters, digits, "
                             f"'_', '.', ':', '-'; up to 100); got {account_id!r}")
        return self._post("payment-service", f"/payments/accounts/{segment(account_id)}/fund",
                          {"amount": amount})

    def restock(self, sku: str, quantity: int) -> dict[str, Any]:
        """Bring `quantity` more units of `sku` into the warehouse: `StockRestocked`."""
        if not isinstance(sku, str) or not sku.strip():
            raise AdminError(f"sku is a product code like \"MOUSE-WL\" (lab.stock() lists "
                             f"them); got {sku!r}")
        return self._post("inventory-service", f"/inventory/{segment(sku)}/restock",
                          {"quantity": quantity})

    def __repr__(self) -> str:
        return f"<Admin {'on' if self._token else 'off'}: fund(account_id, amount), restock(sku, quantity)>"
