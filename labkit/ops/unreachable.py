"""The one sentence for a lab service that did not answer at all (connection refused, timeout):
which service, where, what happened, and where to look."""

from __future__ import annotations

from collections.abc import Mapping


def unreachable(service: str | None, url: str, exc: BaseException) -> str:
    """`service`: its name, or None when only the URL is known."""
    who = f"{service} is not reachable at {url}" if service else f"nothing answers at {url}"
    return (f"{who} ({type(exc).__name__}); is the service running? (lab.status() or "
            "`labkit status`; lab.up() or `labkit up` starts what is down)")


def service_at(url: str, urls: Mapping[str, str]) -> str | None:
    """The name of the service whose base URL `url` starts with (`urls`: name -> base URL, as
    `Lab.urls()` gives them), else None."""
    for name, base in urls.items():
        if base and url.startswith(base.rstrip("/")):
            return name
    return None
