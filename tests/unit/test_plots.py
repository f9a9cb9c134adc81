"""Figures: explicit sizes, titles, labelled axes; Korean renders without missing glyphs."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
from matplotlib.figure import Figure

from labkit.lab.topology import call_graph
from labkit.workbook import plots

T0 = pd.Timestamp("2026-03-01T10:00:00Z")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def timeline() -> pd.DataFrame:
    rows = [
        ("s1", "validate_user", "action", 0.00, 0.02, "succeeded"),
        ("s1", "create_order", "action", 0.02, 0.05, "succeeded"),
        ("s1", "reserve_stock", "action", 0.05, 0.08, "succeeded"),
        ("s1", "charge_payment", "action", 0.08, 0.10, "failed"),
        ("s1", "reserve_stock", "compensation", 0.10, 0.12, "succeeded"),
        ("s1", "create_order", "compensation", 0.12, 0.13, "succeeded"),
        ("s2", "validate_user", "action", 0.20, 0.21, "succeeded"),
        ("s2", "create_order", "action", 0.21, None, "running"),
    ]
    return pd.DataFrame([{"saga": s, "step": st, "kind": k, "start": at(a),
                          "end": at(b) if b is not None else None, "outcome": o}
                         for s, st, k, a, b, o in rows])


def assert_readable(fig: Figure, width: float | None = None) -> None:
    assert isinstance(fig, Figure)
    w, h = fig.get_size_inches()
    assert w >= 8 and h >= 3
    if width is not None:
        assert w == width
    ax = fig.axes[0]
    assert ax.get_title(), "every figure has a title"
    if ax.axison:
        assert ax.get_xlabel() and ax.get_ylabel(), "labelled axes"
        assert ax.title.get_fontsize() >= 16
        assert ax.xaxis.label.get_fontsize() >= 13
    fig.canvas.draw()  # renders without error


def test_korean_renders_with_nanumgothic_and_no_missing_glyphs(tmp_path):
    from matplotlib import font_manager

    font = font_manager.findfont(font_manager.FontProperties(family=plots.STYLE["font.family"]))
    assert "Nanum" in font
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise
        fig = plots.projection_state({"활성": 3}, {"활성": 2, "비활성": 1}, "사용자 상태별 수 — 한글 제목")
        plots.save(fig, tmp_path / "korean.png")
    assert (tmp_path / "korean.png").stat().st_size > 10_000


def test_saga_gantt_one_row_per_saga_step_and_hatched_compensations():
    fig = plots.saga_gantt(timeline())
    assert_readable(fig, width=13)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 6  # s1: 4 steps (compensations share their step's row), s2: 2 steps
    assert labels[0].endswith("validate_user") and "s1" in labels[0]
    bars = ax.patches
    assert len(bars) == 8
    hatched = [b for b in bars if b.get_hatch()]
    assert len(hatched) == 2  # the two compensations
    colors = {tuple(round(c, 3) for c in b.get_facecolor()[:3]) for b in bars if not b.get_hatch()}
    assert len(colors) == 3  # succeeded, failed, running
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("보상" in t for t in legend_texts)
    assert any("failed" in t for t in legend_texts)


def test_saga_gantt_single_saga_uses_step_names_and_numbers():
    df = timeline()
    df = df[df["saga"] == "s1"].copy()
    df["start"] = [0.0, 0.02, 0.05, 0.08, 0.10, 0.12]
    df["end"] = [0.02, 0.05, 0.08, 0.10, 0.12, 0.13]
    fig = plots.saga_gantt(df)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["validate_user", "create_order", "reserve_stock", "charge_payment"]


def test_saga_gantt_refuses_empty_and_malformed_timelines():
    with pytest.raises(ValueError, match="empty"):
        plots.saga_gantt(pd.DataFrame(columns=["saga", "step", "kind", "start", "end", "outcome"]))
    with pytest.raises(ValueError, match="missing columns: outcome"):
        plots.saga_gantt(timeline().drop(columns=["outcome"]))


def test_before_after_shows_changes_and_switches_to_log_scale_for_wide_ranges():
    before = pd.DataFrame({"account_id": ["alice", "bob", "merchant"], "balance": [100, 50, 0]})
    after = pd.DataFrame({"account_id": ["alice", "bob", "merchant"], "balance": [70, 50, 30]})
    fig = plots.before_after(before, after, "account_id", "balance", "잔액")
    assert_readable(fig)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "-30" in texts and "+30" in texts
    assert ax.get_yscale() == "linear"
    rich = plots.before_after({"alice": 100_000_000, "bob": 1_000}, {"alice": 99_991_100, "bob": 1_000},
                              "account_id", "balance", "잔액")
    assert rich.axes[0].get_yscale() == "log"
    assert "로그" in rich.axes[0].get_ylabel()


def test_projection_lag_stacks_command_and_lag_with_median_line():
    df = pd.DataFrame({"command": [1, 2, 3, 4], "lag_ms": [10.0, 12.0, 30.0, 11.0],
                       "command_ms": [5.0, 6.0, 5.0, 5.0]})
    fig = plots.projection_lag(df)
    assert_readable(fig, width=12)
    ax = fig.axes[0]
    assert len(ax.patches) == 8  # command bars + lag bars
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "11.5 ms" in legend  # median lag
    only_lag = plots.projection_lag(df.drop(columns=["command_ms"]))
    assert len(only_lag.axes[0].patches) == 4
    with pytest.raises(ValueError):
        plots.projection_lag(pd.DataFrame(columns=["command", "lag_ms"]))


def test_projection_state_and_replay_throughput():
    fig = plots.projection_state({"active": 3, "inactive": 1}, {"active": 2, "inactive": 2},
                                 "사용자", xlabel="상태", ylabel="수")
    assert_readable(fig)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["active", "inactive"]

    class Stats:  # a ReplayStats-like object
        def __init__(self, rate: float, events: int) -> None:
            self.events_per_s, self.events = rate, events

    runs = [{"events_per_s": 12000.0, "events_count": 500}, Stats(15000.0, 500)]
    fig = plots.replay_throughput(runs)
    assert_readable(fig)
    assert [round(p.get_height()) for p in fig.axes[0].patches] == [12000, 15000]
    assert any("500" in t.get_text() for t in fig.axes[0].texts)


def test_service_map_draws_every_node_and_edge_of_the_call_graph():
    edges = call_graph()
    fig = plots.service_map(edges)
    assert_readable(fig)
    ax = fig.axes[0]
    names = {t.get_text() for t in ax.texts}
    assert {e[0] for e in edges} | {e[1] for e in edges} <= names
    arrows = [p for p in ax.patches if p.__class__.__name__ == "FancyArrowPatch"]
    assert len(arrows) == len(edges)


def test_service_map_places_unknown_nodes_instead_of_failing():
    fig = plots.service_map([("gateway", "user-service", "route"), ("new-service", "event store", "db")])
    assert "new-service" in {t.get_text() for t in fig.axes[0].texts}
