"""Tables for the notebooks: readable in JupyterLab at 1024x768, and the pandas plumbing that
would otherwise fill a cell, behind names that say what the table is.

    from labkit.workbook import tables
    tables.show(df)                         # long text wraps (never "…"), wide tables split
    tables.saga_steps()                     # the five steps and the HTTP request of each
    tables.saga_stream(lab, saga_id)        # a saga's stream: step, attempt, owner per event
    tables.before_after(a, b, "account_id", "balance")   # before, after, change
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from labkit.lab import Lab

#: A text column wraps once any value is longer than this.
WRAP_AT = 30
#: At 1024x768 JupyterLab's output area is ~600 px wide with the file browser open: about
#: five columns of short text.
MAX_COLUMNS = 5
#: Inline styles: JupyterLab's own table CSS (right-aligned, centred cells) outranks a
#: stylesheet in the output; a `style` attribute outranks it.
CELL = "text-align: left; vertical-align: top; padding: 0.3em 0.5em;"
WRAP = "white-space: pre-wrap; min-width: 9em; max-width: 32em;"
#: A long name or URL may break anywhere rather than push the table off the screen; short
#: values (and headers) stay whole.
BREAK = "overflow-wrap: anywhere;"
BREAK_AT = 16


class Table:
    """A DataFrame shown as one or more HTML tables; `.data` is the DataFrame itself."""

    def __init__(self, data: pd.DataFrame, parts: list[str]) -> None:
        self.data = data
        self._parts = parts

    def _repr_html_(self) -> str:
        return "".join(self._parts)

    def __repr__(self) -> str:
        return self.data.to_string(index=False, max_colwidth=200)


#: Numbers in these columns are names, not amounts: no thousands separator.
_ID_COLUMN = re.compile(r"(^|[ _#])(pid|id|position|version|port|attempt|#)$")


def _cell(value: Any, column: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    plain = bool(_ID_COLUMN.search(str(column).lower())) or str(column) == "#"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float) or hasattr(value, "dtype"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if number.is_integer():
            return f"{int(number)}" if plain else f"{int(number):,}"
        return f"{number:,.2f}"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _html(df: pd.DataFrame, wrap: set[str], caption: str | None) -> str:
    head = "".join(f'<th style="{CELL}">{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            text = _cell(value, col)
            style = CELL + (WRAP if col in wrap else "") + (BREAK if len(text) > BREAK_AT else "")
            cells.append(f'<td style="{style}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = (f'<caption style="caption-side: top; text-align: left; font-weight: bold;">'
           f"{html.escape(caption)}</caption>" if caption else "")
    return (f'<table class="labkit-table" style="margin: 0.4em 0;">{cap}<thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def long_text_columns(df: pd.DataFrame, at: int = WRAP_AT) -> list[str]:
    """Columns holding text longer than `at` characters somewhere."""
    return [c for c in df.columns if any(len(_cell(v, c)) > at for v in df[c])]


def show(df: pd.DataFrame, *, wrap: Iterable[str] | None = None, key: Sequence[str] | str = (),
         max_columns: int = MAX_COLUMNS, caption: str | None = None) -> Table:
    """A DataFrame as the notebooks should show it at 1024x768: every value in full (no "…"),
    long text wrapped inside its cell (`wrap`: which columns; default: those with long text),
    and a table wider than `max_columns` split into several, each repeating the `key`
    column(s) (default: the first column)."""
    wrap_cols = set(long_text_columns(df) if wrap is None else wrap)
    keys = [key] if isinstance(key, str) else list(key) or list(df.columns[:1])
    rest = [c for c in df.columns if c not in keys]
    size = max(1, max_columns - len(keys))
    groups = [rest[i:i + size] for i in range(0, len(rest), size)] or [[]]
    parts = []
    for i, cols in enumerate(groups):
        sub = df[[*keys, *cols]]
        cap = caption if len(groups) == 1 else f"{caption or ''} ({i + 1}/{len(groups)})".strip()
        parts.append(_html(sub, wrap_cols, cap))
    return Table(df, parts)


# ---- the saga -------------------------------------------------------------------------------------
def saga_steps() -> pd.DataFrame:
    """The order saga's steps (`ecommerce.domain.saga`, what the orchestrator runs; with the
    steps deployed plugins added): the service, the HTTP request, its idempotency key, the
    compensation and its request."""
    import pandas as pd

    from ecommerce.domain.saga import SagaState, current_steps, request_for

    steps = current_steps()
    example = SagaState("<saga>", order_id="<order>", user_id="<user>", steps=steps)

    def http(action: str) -> str:
        req = request_for(action, example)
        return f"{req.method} {req.path}"

    return pd.DataFrame([{
        "#": i, "step": st.name, "service": st.service, "request": http(st.name),
        "idempotency key": request_for(st.name, example).idempotency_key,
        "compensation": st.compensation or "-",
        "compensation request": http(st.compensation) if st.compensation else "-",
        "pivot": "✔" if st.pivot else ""} for i, st in enumerate(steps, 1)])


def saga_stream(lab: Lab, saga_id: str) -> pd.DataFrame:
    """A saga's own stream, one row per event: position, version, event_type, step, attempt,
    owner (the orchestrator process that recorded it; SagaStarted: whoever placed the order),
    recorded_at."""
    log = lab.events(stream=f"saga-{saga_id}")
    out = log[["position", "version", "event_type"]].copy()
    out["step"] = log["data"].map(lambda d: d.get("step", ""))
    out["attempt"] = log["data"].map(lambda d: d.get("attempt", ""))
    out["owner"] = log["metadata"].map(lambda m: m.get("owner", "(lab.saga.place_order)"))
    out["recorded_at"] = log["recorded_at"]
    return out


def orchestrators(stream: pd.DataFrame) -> list[str]:
    """The orchestrator processes that drove a saga (from `saga_stream`), in order."""
    owners = stream["owner"].iloc[1:]  # the first event is SagaStarted
    return [o for o in dict.fromkeys(owners) if o and not o.startswith("(")]


# ---- before and after --------------------------------------------------------------------------
def before_after(before: pd.DataFrame, after: pd.DataFrame, key: str,
                 values: str | Sequence[str]) -> pd.DataFrame:
    """One row per `key` (account, SKU): each of `values` before and after, and its change."""
    cols = [values] if isinstance(values, str) else list(values)
    merged = before[[key, *cols]].merge(after[[key, *cols]], on=key, how="outer",
                                        suffixes=(" before", " after"))
    for c in cols:
        merged[f"{c} change"] = merged[f"{c} after"].fillna(0) - merged[f"{c} before"].fillna(0)
    order = [key] + [f"{c} {w}" for c in cols for w in ("before", "after", "change")]
    return merged[order]


# ---- the services -------------------------------------------------------------------------------
def service_addresses(lab: Lab) -> pd.DataFrame:
    """Each HTTP service: the variable its peers read, its cluster DNS name, and where it is in
    this lab (what `nslookup command-service...` answers in the course)."""
    import pandas as pd

    from ecommerce.config import service_url_var
    from ecommerce.services.registry import SERVICES

    rows = []
    for name, spec in SERVICES.items():
        if not spec.http:
            continue
        try:
            here = lab.url(name)
        except Exception as exc:  # not started (an earlier step): say so
            here = f"(not running: {str(exc).split(';')[-1].strip()})"
        rows.append({"service": name, "env var": service_url_var(name),
                     "cluster DNS": f"http://{name}.{lab.settings.namespace}.svc.cluster.local",
                     f"this lab ({lab.mode})": here})
    return pd.DataFrame(rows)


def store_backends(lab: Lab) -> dict[str, str]:
    """What really holds the lab's data now, to label measurements honestly:
    {"events": "PostgreSQL" | "SQLite", "read": "Redis" | "SQLite"} (cluster: PostgreSQL, Redis)."""
    if lab.mode == "cluster":
        return {"events": "PostgreSQL", "read": "Redis"}
    st = lab.settings
    return {"events": "PostgreSQL" if st.pg_url else "SQLite",
            "read": "Redis" if st.redis_url else "SQLite"}


# ---- the retrospective (05) ---------------------------------------------------------------------
def categories(log: pd.DataFrame) -> pd.Series:
    """Each event's stream category: `saga-3f2a` -> `saga`."""
    return log["stream_id"].str.extract(r"^([a-z]+)-", expand=False)


def compensations_undone(log: pd.DataFrame) -> pd.DataFrame:
    """What the compensations in `log` (`lab.events()`) undid: orders cancelled, units
    released, cents refunded (and late charges refused)."""
    import pandas as pd

    def undone(event_type: str, field: str | None = None) -> tuple[int, int]:
        rows = log[log["event_type"] == event_type]
        total = int(rows["data"].map(lambda d: d.get(field, 0)).sum()) if field else 0
        return len(rows), total

    from ecommerce.domain import orders, payments, stock

    cancelled, _ = undone(orders.ORDER_CANCELLED)
    released, units = undone(stock.STOCK_RELEASED, "quantity")
    refunded, cents = undone(payments.PAYMENT_REFUNDED, "amount")
    # refunded before the (late) charge: it is refused
    voided, _ = undone(payments.PAYMENT_VOIDED)
    return pd.DataFrame([
        {"compensation": "cancel_order", "events": cancelled,
         "undid": "orders that would stay PENDING"},
        {"compensation": "release_stock", "events": released,
         "undid": f"{units} units held for nobody"},
        {"compensation": "refund_payment", "events": refunded + voided,
         "undid": f"{cents:,} cents taken for nothing; {voided} late charges refused"},
    ])


#: pattern -> (its manifests step, the stream categories it writes; None: the whole log).
PATTERNS: dict[str, tuple[str, list[str] | None]] = {
    "Saga": ("02-saga", ["saga", "order", "stock", "reservation", "payment"]),
    "CQRS": ("03-cqrs", ["user"]),
    "Event Sourcing": ("04-event-sourcing", None),
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def pattern_complexity(log: pd.DataFrame) -> pd.DataFrame:
    """Per pattern: Kubernetes objects and workloads of its step, and the streams, event types
    and events it wrote (Event Sourcing: the whole log, which holds the others' events too)."""
    import pandas as pd

    from labkit.runtime.manifests import load_step

    cats = categories(log)
    rows = []
    for pattern, (step, streams) in PATTERNS.items():
        mine = log if streams is None else log[cats.isin(streams)]
        objects = load_step(step)
        rows.append({"pattern": pattern, "K8s objects": len(objects),
                     "workloads": sum(o["kind"] in WORKLOAD_KINDS for o in objects),
                     "streams": mine["stream_id"].nunique(),
                     "event types": mine["event_type"].nunique(), "events": len(mine)})
    return pd.DataFrame(rows).set_index("pattern")
