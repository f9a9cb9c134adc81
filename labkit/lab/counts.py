"""The one check for a count the notebook API takes (how many sagas, how many log lines)."""

from __future__ import annotations


def check_count(name: str, value: object, what: str, *, allow_none: bool = False,
                error: type[Exception] = ValueError) -> None:
    """A count of `what` is a whole number >= 1 (or None where that means all), else `error`."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = " (None: all)" if allow_none else ""
        raise error(f"{name} is how many {what}: a whole number >= 1{also}, not {value!r}")
