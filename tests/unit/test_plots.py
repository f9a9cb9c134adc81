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


def _renderer(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # lays out (constrained layout) and places every text
    return renderer


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes overlap (unreadable labels)."""
    renderer = _renderer(fig)
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    out = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b) and box_a.width and box_b.width:
                out.append((a, b))
    return out


def test_saga_gantt_one_row_per_saga_step_and_hatched_compensations():
    fig = plots.saga_gantt(timeline())
    assert_readable(fig, width=plots.WIDTH)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # s1: 4 steps (compensations share their step's row), s2: 2 steps; each saga has a header
    assert labels == ["s1", "validate_user", "create_order", "reserve_stock", "charge_payment",
                      "s2", "validate_user", "create_order"]
    bars = ax.patches
    assert len(bars) == 8
    hatched = [b for b in bars if b.get_hatch()]
    assert len(hatched) == 2  # the two compensations
    colors = {tuple(round(c, 3) for c in b.get_facecolor()[:3]) for b in bars if not b.get_hatch()}
    assert len(colors) == 3  # succeeded, failed, running
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("보상" in t for t in legend_texts)
    assert any("failed" in t for t in legend_texts)


def test_saga_gantt_names_sagas_by_what_happened_and_shades_gaps():
    df = timeline()
    df["label"] = df["saga"].map({"s1": "payment-declined · bob", "s2": "happy · alice"})
    fig = plots.saga_gantt(df, gaps=[(at(0.13), at(0.2), "오케스트레이터 없음")])
    ax = fig.axes[0]
    headers = [t for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert [t.get_text() for t in headers] == ["payment-declined · bob (s1)", "happy · alice (s2)"]
    assert any("오케스트레이터 없음" in t.get_text() for t in fig.legends[0].get_texts())
    assert not overlapping_texts(fig)


def test_saga_gantt_aligned_at_each_start_keeps_each_saga_together():
    df = timeline()
    fig = plots.saga_gantt(df, align="start")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["s1", "validate_user", "create_order", "reserve_stock", "charge_payment",
                      "s2", "validate_user", "create_order"]
    s2_first = next(p for p in fig.axes[0].patches if p.get_y() < 6.5 and p.get_y() > 5.5)
    assert s2_first.get_x() == 0  # s2 drawn from its own start


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


def test_before_after_labels_never_run_into_each_other():
    """The course's balances: 100,000,000 next to 99,987,500 once printed as one string."""
    fig = plots.before_after({"alice": 100_000_000, "bob": 1_000, "merchant": 0},
                             {"alice": 99_987_500, "bob": 1_000, "merchant": 12_500},
                             "account_id", "balance", "계좌 잔액: 사가 전후", ylabel="잔액 (센트)")
    assert not overlapping_texts(fig)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0] == "alice\n100,000,000\n-> 99,987,500"
    assert "-12,500" in [t.get_text() for t in fig.axes[0].texts]
    stock = plots.before_after({f"SKU-{i}": 10 * i for i in range(1, 6)},
                               {f"SKU-{i}": 10 * i - (i == 5) for i in range(1, 6)},
                               "sku", "available", "재고")
    assert not overlapping_texts(stock)


def test_pattern_complexity_title_sits_above_the_panel_titles():
    complexity = pd.DataFrame({"workloads": [2, 2, 3], "event types": [12, 3, 18],
                               "events": [900, 120, 1500]},
                              index=pd.Index(["Saga", "CQRS", "Event Sourcing"], name="pattern"))
    fig = plots.pattern_complexity(complexity)
    assert not overlapping_texts(fig)
    renderer = _renderer(fig)
    suptitle = fig._suptitle.get_window_extent(renderer)
    assert all(suptitle.y0 >= ax.title.get_window_extent(renderer).y1 for ax in fig.axes)


def test_projection_lag_stacks_command_and_lag_with_median_line():
    df = pd.DataFrame({"command": [1, 2, 3, 4], "lag_ms": [10.0, 12.0, 30.0, 11.0],
                       "command_ms": [5.0, 6.0, 5.0, 5.0]})
    fig = plots.projection_lag(df)
    assert_readable(fig, width=plots.WIDTH)
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
