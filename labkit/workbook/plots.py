"""Figures for the notebooks: each function takes labkit data and returns a matplotlib Figure.

Every figure has an explicit size, a title and labelled axes, with fonts large enough for a
projector. Korean text renders with NanumGothic, which `koreanize_matplotlib` bundles and
registers when this module is imported (once, for every figure).

    from labkit.workbook import plots
    plots.projection_lag(lab.projection_lag(20))
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

with warnings.catch_warnings():  # it uses distutils' LooseVersion, deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import koreanize_matplotlib  # noqa: F401  (registers NanumGothic and sets font.family)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.typing import LineStyleType

#: Readable from the back of a classroom.
STYLE: dict[str, Any] = {
    "font.family": mpl.rcParams["font.family"],  # NanumGothic, from koreanize_matplotlib
    "axes.unicode_minus": False,  # NanumGothic has no U+2212 minus sign
    "font.size": 13,
    "axes.titlesize": 17,
    "axes.titleweight": "bold",
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 18,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

#: Saga step outcomes -> colour. Unknown outcomes get a neutral grey.
OUTCOME_COLORS = {
    "succeeded": "#2e7d32", "success": "#2e7d32", "completed": "#2e7d32", "ok": "#2e7d32",
    "failed": "#c62828", "refused": "#c62828", "declined": "#c62828", "error": "#c62828",
    "compensated": "#ef6c00",
    "unknown": "#757575", "timeout": "#757575", "timed_out": "#757575",
    "running": "#1565c0", "in_progress": "#1565c0", "retried": "#f9a825",
}
BEFORE_COLOR, AFTER_COLOR = "#90a4ae", "#1e88e5"
#: Above this ratio between the largest and smallest positive value, bars use a log axis.
LOG_RATIO = 1000
EDGE_STYLES: dict[str, tuple[str, LineStyleType, str]] = {  # kind -> (colour, linestyle, label)
    "route": ("#ef6c00", "-", "게이트웨이 라우트 (HTTPRoute)"),
    "http": ("#1565c0", "-", "서비스 간 HTTP 호출"),
    "db": ("#6d4c41", "--", "데이터베이스 접근"),
}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    with mpl.rc_context(cast(Any, STYLE)):  # matplotlib checks the keys (its stubs list them)
        yield


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    """A figure not attached to pyplot's global state (no leaks when making many)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _records(data: Any) -> list[dict[str, Any]]:
    if hasattr(data, "to_dict"):
        return data.to_dict("records")
    return [dict(r) if isinstance(r, Mapping) else _as_dict(r) for r in data]


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "__dict__"):
        return dict(vars(obj))
    raise TypeError(f"cannot read fields of {type(obj).__name__}")


def _seconds(values: Sequence[Any]) -> list[float]:
    """Timestamps (datetime, ISO text, pandas Timestamp) or numbers -> seconds since the first."""
    import pandas as pd

    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        nums = [float(v) for v in values]
        origin = min(nums) if nums else 0.0
        return [v - origin for v in nums]
    stamps = pd.to_datetime(pd.Series(list(values)), utc=True, format="ISO8601")
    origin = stamps.min()
    return [(s - origin).total_seconds() for s in stamps]


def _short(text: str, limit: int = 14) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- saga ---------------------------------------------------------------------------------------
#: Figure width for the notebooks (inches, shown at 100 dpi): JupyterLab's output area at
#: 1024x768 is 600-900 px wide (file browser open or closed), so a figure is shown at 75-100%
#: of its size and its fonts stay readable on a projector.
WIDTH = 8.0


def _saga_label(row: Mapping[str, Any]) -> str:
    """`payment-declined · bob (3f2a1c…)` from the timeline's `label` column, else the id."""
    label = row.get("label")
    saga = _short(row["saga"], 8)
    return f"{label} ({saga})" if isinstance(label, str) and label else saga


def saga_gantt(timeline: pd.DataFrame, title: str = "Saga 타임라인: 단계와 보상 트랜잭션",
               gaps: Sequence[tuple[Any, Any, str]] = (), align: str = "shared") -> Figure:
    """One row per saga step; the step's action and (later) its compensation on the same row.

    `timeline` columns: saga, step, kind ("action" | "compensation"), start, end, outcome, and
    `label` (what happened, e.g. `payment-declined · bob`; `lab.saga.timeline()` adds it).
    Bars are coloured by outcome; compensations are hatched with a dark edge. With several
    sagas, each group of rows starts with a bold row naming the saga by its label.
    `gaps`: (start, end, text) spans to shade, e.g. when no orchestrator was running.
    `align="start"`: each saga from its own first event (sagas placed minutes apart stay
    readable); `"shared"`: one clock for all (sagas that ran at the same time).
    """
    from matplotlib.patches import Patch

    rows = _records(timeline)
    if not rows:
        raise ValueError("the timeline is empty: run a saga first (lab.saga.place_order(...))")
    missing = {"saga", "step", "kind", "start", "end", "outcome"} - set(rows[0])
    if missing:
        raise ValueError(f"timeline is missing columns: {', '.join(sorted(missing))}")
    ends = [r["end"] if r["end"] is not None and r["end"] == r["end"] else r["start"] for r in rows]
    gap_times = [t for g in gaps for t in g[:2]]
    times = _seconds([r["start"] for r in rows] + ends + gap_times)
    n = len(rows)
    for r, s, e in zip(rows, times[:n], times[n:2 * n], strict=True):
        r["_s"], r["_e"] = s, max(e, s)
    origin: dict[str, float] = {}  # each saga's first event on the shared clock: its order
    for r in rows:
        origin[r["saga"]] = min(origin.get(r["saga"], r["_s"]), r["_s"])
    if align == "start":
        for r in rows:
            r["_s"], r["_e"] = r["_s"] - origin[r["saga"]], r["_e"] - origin[r["saga"]]
    gap_secs = list(zip(times[2 * n::2], times[2 * n + 1::2], [g[2] for g in gaps], strict=True))
    # Row order: sagas in order of their first event, steps in order of their first event.
    first_saga: dict[str, float] = {}
    first_step: dict[tuple[str, str], float] = {}
    label_of: dict[str, str] = {}
    for r in rows:
        first_saga[r["saga"]] = min(first_saga.get(r["saga"], r["_s"]), r["_s"])
        key = (r["saga"], r["step"])
        first_step[key] = min(first_step.get(key, r["_s"]), r["_s"])
        label_of.setdefault(r["saga"], _saga_label(r))
    keys = sorted(first_step, key=lambda k: (origin[k[0]], k[0], first_step[k]))
    multi = len(first_saga) > 1
    y_of: dict[tuple[str, str], int] = {}
    ticks: list[tuple[int, str, bool]] = []  # (y, text, is a saga's header row)
    y = 0
    for i, key in enumerate(keys):
        if multi and (i == 0 or keys[i - 1][0] != key[0]):
            ticks.append((y, label_of[key[0]], True))
            y += 1
        y_of[key] = y
        ticks.append((y, str(key[1]), False))
        y += 1
    span = max((r["_e"] for r in rows), default=1.0) or 1.0
    min_width = span * 0.006  # instantaneous steps stay visible
    height = min(2.6 + 0.36 * y, 18.0)
    with _style():
        fig, ax = _figure(WIDTH, height)
        for start, end, text in gap_secs:
            ax.axvspan(start, end, color="#c62828", alpha=0.12, label=text)
        for r in rows:
            yy = y_of[(r["saga"], r["step"])]
            color = OUTCOME_COLORS.get(str(r["outcome"]).lower(), "#9e9e9e")
            comp = r["kind"] == "compensation"
            ax.barh(yy, max(r["_e"] - r["_s"], min_width), left=r["_s"], height=0.55 if comp else 0.7,
                    color=color, alpha=0.55 if comp else 0.9, hatch="///" if comp else None,
                    edgecolor="#212121" if comp else color, linewidth=1.5 if comp else 0.5)
        ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks])
        for tick, (_, _, header) in zip(ax.get_yticklabels(), ticks, strict=True):
            if header:
                tick.set_fontweight("bold")
                tick.set_color("#1a237e")
        ax.set_ylim(y - 0.5, -0.5)  # first row on top
        if multi:  # a line above each saga's header row
            for yy, _, header in ticks:
                if header and yy:
                    ax.axhline(yy - 0.5, color="#9e9e9e", linewidth=0.8)
        ax.set_xlabel("각 사가의 첫 이벤트부터 경과 시간 (초)" if align == "start" and multi
                      else "첫 이벤트부터 경과 시간 (초)")
        ax.set_ylabel("사가 · 단계" if multi else "단계")
        ax.set_title(title)
        ax.set_xlim(left=0, right=max([span, *(g[1] for g in gap_secs)]) * 1.03)
        outcomes = sorted({str(r["outcome"]).lower() for r in rows})
        handles = [Patch(color=OUTCOME_COLORS.get(o, "#9e9e9e"), label=f"결과: {o}") for o in outcomes]
        if any(r["kind"] == "compensation" for r in rows):
            handles.append(Patch(facecolor="white", edgecolor="#212121", hatch="///",
                                 label="보상 (compensation)"))
        handles += [Patch(color="#c62828", alpha=0.12, label=g[2]) for g in gap_secs]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3),
                   framealpha=0.9)
        ax.grid(axis="y", visible=False)
    return fig


# ---- before / after -------------------------------------------------------------------------------
def _pairs(before: Any, after: Any, key: str, value: str) -> tuple[list[str], list[float], list[float]]:
    def as_map(data: Any) -> dict[str, float]:
        if isinstance(data, Mapping):
            return {str(k): float(v) for k, v in data.items()}
        return {str(r[key]): float(r[value]) for r in _records(data)}

    b, a = as_map(before), as_map(after)
    keys = list(dict.fromkeys([*b, *a]))
    return keys, [b.get(k, 0.0) for k in keys], [a.get(k, 0.0) for k in keys]


def _fmt(v: float, sign: str = "") -> str:
    return f"{v:{sign},.0f}" if float(v).is_integer() else f"{v:{sign},.2f}"


#: Value labels on the bars only while they are this short: a longer one ("100,000,000") is
#: wider than its bar and would run into its neighbour ("100,000,00099,987,500").
SHORT_LABEL = 6


def _grouped_bars(ax: Any, keys: list[str], before: list[float], after: list[float],
                  labels: tuple[str, str]) -> None:
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    x = np.arange(len(keys))
    w = 0.38
    old_bars = ax.bar(x - w / 2, before, w, label=labels[0], color=BEFORE_COLOR)
    bars = ax.bar(x + w / 2, after, w, label=labels[1], color=AFTER_COLOR)
    top = max([*before, *after, 1.0])
    short = max(len(_fmt(v)) for v in (*before, *after)) <= SHORT_LABEL
    if short and len(keys) <= 12:  # the values themselves, small, on each bar
        for rect, v in [*zip(old_bars, before, strict=True), *zip(bars, after, strict=True)]:
            ax.annotate(_fmt(v), (rect.get_x() + rect.get_width() / 2, v), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=10,
                        color="#455a64")
        tick_labels = keys
    else:  # long values: "before → after" under each group, once, where there is room
        tick_labels = [f"{k}\n{_fmt(b)}\n-> {_fmt(a)}" if b != a else f"{k}\n{_fmt(a)}"
                       for k, b, a in zip(keys, before, after, strict=True)]
    for rect, b, a in zip(bars, before, after, strict=True):
        delta = a - b
        if delta:
            ax.annotate(_fmt(delta, "+"), (rect.get_x(), max(a, b)),
                        xytext=(0, 18), textcoords="offset points",
                        ha="center", va="bottom", fontsize=13, fontweight="bold",
                        color="#c62828" if delta < 0 else "#2e7d32")
    many = len(keys) > 5 and short
    ax.set_xticks(x, tick_labels, rotation=20 if many else 0, ha="right" if many else "center",
                  fontsize=11 if not short else None)
    positive = [v for v in (*before, *after) if v > 0]
    if positive and max(positive) / min(positive) > LOG_RATIO:
        # e.g. a rich customer next to a poor one: a linear axis would hide every change
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, top * 8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    else:
        ax.set_ylim(0, top * 1.25)
        ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, borderaxespad=0,
              frameon=False)  # above the plot: never over a bar or a label
    ax.grid(axis="x", visible=False)


def before_after(before: Any, after: Any, key: str, value: str, title: str,
                 ylabel: str | None = None) -> Figure:
    """Grouped bars per `key` (account, SKU...): `value` before and after, with the change.

    `before` / `after`: DataFrames (e.g. `lab.accounts()`, `lab.stock()`) or {key: value}.
    """
    keys, b, a = _pairs(before, after, key, value)
    with _style():
        fig, ax = _figure(min(max(8.0, 1.1 * len(keys) + 3), WIDTH), 5.5)
        _grouped_bars(ax, keys, b, a, ("이전 (before)", "이후 (after)"))
        ax.set_title(title, pad=30)
        ax.set_xlabel(key)
        ax.set_ylabel((ylabel or value) + (" (로그 눈금)" if ax.get_yscale() == "log" else ""))
    return fig


def projection_state(before: Mapping[str, int], after: Mapping[str, int], title: str,
                     xlabel: str = "상태", ylabel: str = "개수") -> Figure:
    """A read model's state before and after (users by status, orders by outcome...)."""
    keys, b, a = _pairs(before, after, "", "")
    with _style():
        fig, ax = _figure(min(max(8.0, 1.2 * len(keys) + 3), WIDTH), 5.5)
        _grouped_bars(ax, keys, b, a, ("이전 (before)", "이후 (after)"))
        ax.set_title(title, pad=30)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return fig


# ---- CQRS / event sourcing -------------------------------------------------------------------------
def projection_lag(df: pd.DataFrame, title: str = "CQRS 최종 일관성: 명령이 조회에 보이기까지") -> Figure:
    """Per command: how long until query-service showed it (lag_ms), and the command itself."""
    import numpy as np

    rows = _records(df)
    if not rows:
        raise ValueError("no measurements: run lab.projection_lag(20) first")
    x = np.array([r["command"] for r in rows])
    lag = np.array([float(r["lag_ms"]) for r in rows])
    has_cmd = "command_ms" in rows[0]
    with _style():
        fig, ax = _figure(WIDTH, 5.5)
        if has_cmd:
            cmd = np.array([float(r["command_ms"]) for r in rows])
            ax.bar(x, cmd, color="#90a4ae", label="명령 처리 (command-service 응답)")
            ax.bar(x, lag, bottom=cmd, color="#1e88e5", label="프로젝션 지연 (조회에 보이기까지)")
        else:
            ax.bar(x, lag, color="#1e88e5", label="프로젝션 지연 (조회에 보이기까지)")
        median, p95 = float(np.median(lag)), float(np.percentile(lag, 95))
        total = (cmd + lag) if has_cmd else lag
        ax.axhline(float(np.median(total)), color="#c62828", linestyle="--", linewidth=1.5,
                   label=(f"합계 중앙값 {np.median(total):.1f} ms" if has_cmd else "중앙값")
                   + f" · 지연 중앙값 {median:.1f} ms, p95 {p95:.1f} ms")
        ax.set_title(title)
        ax.set_xlabel("명령 번호")
        ax.set_ylabel("밀리초 (ms)")
        fig.legend(loc="outside lower center", ncol=2, framealpha=0.9)
        ax.grid(axis="x", visible=False)
        if len(x) <= 30:
            ax.set_xticks(x)
    return fig


def replay_throughput(stats_list: Iterable[Any], title: str = "이벤트 재생(replay) 처리량") -> Figure:
    """events/s per replay run; each item is a replay result dict or `ReplayStats`."""
    runs = [r if isinstance(r, Mapping) else _as_dict(r) for r in stats_list]
    if not runs:
        raise ValueError("no replay runs: call lab.replay() first")
    rates = [float(r["events_per_s"]) for r in runs]
    counts = [r.get("events", r.get("events_count")) for r in runs]
    labels = [str(r.get("label") or f"{i + 1}회차") for i, r in enumerate(runs)]
    with _style():
        fig, ax = _figure(min(max(8.0, 1.6 * len(runs) + 4), WIDTH), 5.5)
        bars = ax.bar(labels, rates, color="#6a1b9a", width=0.6)
        for rect, rate, count in zip(bars, rates, counts, strict=True):
            text = f"{rate:,.0f}/s" + (f"\n({count:,} 이벤트)" if count is not None else "")
            ax.annotate(text, (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                        xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                        fontsize=12)
        ax.set_ylim(0, max([*rates, 1.0]) * 1.25)
        ax.yaxis.set_major_formatter("{x:,.0f}")
        ax.set_title(title)
        ax.set_xlabel("재생 실행")
        ax.set_ylabel("초당 이벤트 (events/s)")
        ax.grid(axis="x", visible=False)
    return fig


def pattern_complexity(complexity: pd.DataFrame,
                       title: str = "패턴별 복잡도: 이 실습에서 센 값") -> Figure:
    """05-checkpoints: one panel per measure (workloads, event types, events), one bar per
    pattern (the rows of `complexity`, indexed by pattern)."""
    panels = {"workloads": "워크로드 수 (manifests)", "event types": "이벤트 타입 수",
              "events": "이벤트 수 (로그)"}
    colors = ["#ff5722", "#2196f3", "#795548"]
    with _style():
        fig = Figure(figsize=(WIDTH, 4.8), layout="constrained")
        axes = fig.subplots(1, len(panels))
        for ax, (column, label) in zip(axes, panels.items(), strict=True):
            names = [str(p).replace(" ", "\n") for p in complexity.index]  # never touching
            bars = ax.bar(names, complexity[column], color=colors[: len(complexity)])
            ax.bar_label(bars, fmt="{:,.0f}", fontsize=11)
            ax.set_title(label, fontsize=13)
            ax.set_xlabel("패턴")
            ax.tick_params(axis="x", labelsize=10)
            ax.margins(y=0.18)
            ax.grid(axis="x", visible=False)
        axes[0].set_ylabel("개수")
        # The figure's title in its own row above the panels' titles (constrained layout
        # reserves the space), never on top of them.
        fig.suptitle(title, fontweight="bold")
        engine = fig.get_layout_engine()
        if isinstance(engine, ConstrainedLayoutEngine):
            engine.set(h_pad=0.12)
    return fig


# ---- topology ---------------------------------------------------------------------------------------
#: Fixed layout (x, y): callers on the left, services in the middle, stores and workers right.
LAYOUT: dict[str, tuple[float, float]] = {
    "saga-orchestrator": (0.0, 6.3),
    "gateway": (0.0, 2.4),
    "order-service": (2.0, 7.5),
    "inventory-service": (2.0, 6.3),
    "payment-service": (2.0, 5.1),
    "user-service": (2.0, 3.9),
    "command-service": (2.0, 2.7),
    "query-service": (2.0, 1.3),
    "event-store-api": (2.0, 0.0),
    "event store": (4.4, 5.0),
    "event-processor": (4.4, 2.7),
    "read model": (4.4, 0.6),
}
NODE_COLORS = {"gateway": "#ffe0b2", "saga-orchestrator": "#ffccbc", "event store": "#d7ccc8",
               "read model": "#d7ccc8", "event-processor": "#e1bee7"}


def service_map(edges: Iterable[tuple[str, str, str]],
                title: str = "서비스 맵: 누가 누구를 호출하는가") -> Figure:
    """Draw `topology.call_graph()` edges on a fixed layout (matplotlib only)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    edges = list(edges)
    nodes = list(dict.fromkeys(n for e in edges for n in e[:2]))
    pos = dict(LAYOUT)
    extra = [n for n in nodes if n not in pos]
    for i, n in enumerate(extra):  # anything new goes in a column of its own
        pos[n] = (6.2, 7.5 - 1.2 * i)
    width = 15 if extra else 13
    with _style():
        fig, ax = _figure(width, 8.5)
        ax.set_axis_off()
        ax.grid(False)
        texts = {}
        for n in nodes:
            x, y = pos[n]
            texts[n] = ax.text(x, y, n, ha="center", va="center", fontsize=13, zorder=3,
                               bbox={"boxstyle": "round,pad=0.5", "fc": NODE_COLORS.get(n, "#c8e6c9"),
                                     "ec": "#424242", "lw": 1.2})
        for src, dst, kind in edges:
            color, ls, _ = EDGE_STYLES.get(kind, ("#616161", ":", kind))
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            # a curve only between non-neighbours of one column (it must clear the boxes between)
            rad = 0.35 if x1 == x2 and abs(y1 - y2) > 1.5 else 0.0
            ax.add_patch(FancyArrowPatch(
                (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=16, color=color,
                linestyle=ls, linewidth=1.4, alpha=0.85, zorder=2,
                connectionstyle=f"arc3,rad={rad}", patchA=texts[src].get_bbox_patch(),
                patchB=texts[dst].get_bbox_patch(), shrinkA=2, shrinkB=2))
        xs = [p[0] for p in pos.values() if p in [pos[n] for n in nodes]] or [0]
        ys = [pos[n][1] for n in nodes] or [0]
        ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
        ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
        kinds = list(dict.fromkeys(e[2] for e in edges))
        handles = [Line2D([0], [0], color=EDGE_STYLES.get(k, ("#616161", ":", k))[0],
                          linestyle=EDGE_STYLES.get(k, ("#616161", ":", k))[1], linewidth=2,
                          label=EDGE_STYLES.get(k, ("#616161", ":", k))[2]) for k in kinds]
        ax.legend(handles=handles, loc="lower left", framealpha=0.9)
        ax.set_title(title)
    return fig


def _show_in_notebooks() -> None:
    """Let a returned Figure display as a PNG in Jupyter even if pyplot is never imported.

    The figures here are not pyplot figures (so the inline backend never shows one twice);
    IPython needs a formatter for them, the same one `%matplotlib inline` registers.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight", dpi=100))


_show_in_notebooks()


def save(fig: Figure, path: Any, dpi: int = 120) -> Any:
    """Write a figure as PNG (what `labkit plots export` does for each figure)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path
