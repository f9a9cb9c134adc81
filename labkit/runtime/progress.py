"""Progress lines that survive a browser reload: plain text, never a widget.

A tqdm widget bar in a notebook is an ipywidgets model: once the kernel that made it is gone
(a reload of the page, a reopened notebook), its saved output says "Error displaying widget:
model not found". This progress is a plain-text display updated in place (`display_id`) and,
when done, replaced by one summary line (or nothing). In a terminal it is a `\\r` line on
stderr; elsewhere (logs, tests) it prints nothing.

    with progress(total=9, desc="starting", unit="svc") as bar:
        bar.update(1)
        bar.note("user-service")
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

WIDTH = 24
#: At most this many redraws per second (each one is a message to the browser).
RATE = 10.0


def _jupyter() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "", *, leave: bool = True,
                 enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.leave = max(0, total), desc, unit, leave
        self.n = 0
        self.postfix = ""
        self.started = time.monotonic()
        self._drawn = 0.0
        self._handle: Any = None
        if not enabled:
            self.mode = "off"
        elif _jupyter():
            self.mode = "jupyter"
        elif sys.stderr.isatty():
            self.mode = "tty"
        else:
            self.mode = "off"
        self._draw(force=True)

    # ---- what it says ------------------------------------------------------------------------
    def line(self) -> str:
        done = min(self.n, self.total) if self.total else self.n
        fill = int(WIDTH * done / self.total) if self.total else 0
        bar = "█" * fill + "░" * (WIDTH - fill)
        secs = time.monotonic() - self.started
        text = f"{self.desc}: {bar} {done}/{self.total} {self.unit} ({secs:.1f}s)".replace("  ", " ")
        return text + (f"  {self.postfix}" if self.postfix else "")

    def summary(self) -> str:
        secs = time.monotonic() - self.started
        return f"{self.desc}: {self.n}/{self.total} {self.unit} in {secs:.1f}s".replace("  ", " ")

    # ---- updates -----------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw(force=self.n >= self.total)

    def note(self, text: str) -> None:
        """A short note after the bar (what it is waiting for)."""
        self.postfix = text[:80]
        self._draw()

    set_postfix_str = note  # the tqdm name, for callers written against tqdm

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.mode == "off" or (not force and now - self._drawn < 1.0 / RATE):
            return
        self._drawn = now
        if self.mode == "jupyter":
            from IPython.display import Pretty, display

            if self._handle is None:
                self._handle = display(Pretty(self.line()), display_id=True)
            else:
                self._handle.update(Pretty(self.line()))
        else:
            sys.stderr.write("\r" + self.line() + "\x1b[K")
            sys.stderr.flush()

    def close(self) -> None:
        if self.mode == "jupyter" and self._handle is not None:
            from IPython.display import Pretty

            self._handle.update(Pretty(self.summary() if self.leave else ""))
        elif self.mode == "tty":
            sys.stderr.write("\r" + (self.summary() if self.leave else "") + "\x1b[K"
                             + ("\n" if self.leave else ""))
            sys.stderr.flush()
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "", *, leave: bool = True,
             enabled: bool = True) -> Progress:
    return Progress(total, desc, unit, leave=leave, enabled=enabled)
