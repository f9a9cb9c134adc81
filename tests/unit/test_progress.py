"""Progress in a notebook is plain text updated in place: nothing that needs a widget model,
so a reloaded page shows a line of text, never "Error displaying widget: model not found"."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.runtime import progress as p


class Handle:
    def __init__(self, shown: list[Any]) -> None:
        self.shown = shown

    def update(self, obj: Any) -> None:
        self.shown.append(obj)


def test_in_a_notebook_it_is_text_and_ends_as_one_summary_line(monkeypatch) -> None:
    import IPython.display

    shown: list[Any] = []

    def display(obj: Any, display_id: bool = False) -> Handle:
        assert display_id is True
        shown.append(obj)
        return Handle(shown)

    monkeypatch.setattr(p, "_jupyter", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    with p.progress(3, "starting", "processes") as bar:
        for name in ("a", "b", "c"):
            bar.update(1)
            bar.note(f"{name} ready")
    # Pretty: a text/plain output, no application/vnd.jupyter.widget-view+json
    assert shown and all(isinstance(o, IPython.display.Pretty) for o in shown)
    assert shown[-1].data.startswith("starting: 3/3 processes in ")
    assert "█" * p.WIDTH in shown[-2].data  # the last bar drawn was full


@pytest.mark.parametrize("leave", [True, False])
def test_in_a_terminal_it_redraws_one_line(monkeypatch, capsys, leave) -> None:
    monkeypatch.setattr(p, "_jupyter", lambda: False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    with p.progress(2, "apply 02-saga", "objects", leave=leave) as bar:
        bar.update(2)
    err = capsys.readouterr().err
    assert "\r" in err and "2/2" in err
    assert err.endswith("\n") == leave


def test_off_when_disabled_or_not_a_terminal(monkeypatch, capsys) -> None:
    monkeypatch.setattr(p, "_jupyter", lambda: False)
    with p.progress(2, "x", enabled=False) as bar:
        bar.update(2)
    with p.progress(2, "y") as bar:  # stderr is captured: not a terminal
        bar.update(2)
    assert capsys.readouterr().err == ""
