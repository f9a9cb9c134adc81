"""The one way the notebook API words a service's refusal: the answer's `detail`, and, for a
422, each field and the rule it broke (the `errors` list every lab service sends)."""

from __future__ import annotations

from typing import Any


def refusal(body: Any) -> str:
    """`invalid request: name: String should have at least 1 character` from a service's
    error answer (a JSON object, or whatever else it sent)."""
    if not isinstance(body, dict):
        return str(body)
    detail = str(body.get("detail", body))
    errors = [e for e in body.get("errors") or () if isinstance(e, dict)]
    if not errors:
        return detail
    return f"{detail}: " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
