"""Tables the notebooks show: nothing cut with "…", wide ones split, the plumbing named."""

from __future__ import annotations

import pandas as pd

from labkit.workbook import tables

LONG = "user-service forwarded POST /api/users to command-service at http://127.0.0.1:1234: " * 3


def test_show_keeps_every_character_and_wraps_long_text() -> None:
    df = pd.DataFrame([{"item": "DNS 기반 서비스 디스커버리 동작", "evidence": LONG, "n": 1.5}])
    assert "comm...<" in df._repr_html_()  # what pandas alone shows: the evidence cut off
    shown = tables.show(df)
    html = shown._repr_html_()
    assert LONG.strip() in html.replace("&#x27;", "'") and "..." not in html
    assert html.count("pre-wrap") == 1 and "text-align: left" in html  # the evidence, wrapped
    assert tables.long_text_columns(df) == ["evidence"]
    assert shown.data is df


def test_show_splits_a_wide_table_repeating_the_key() -> None:
    df = tables.saga_steps()
    assert len(df.columns) == 8
    html = tables.show(df, key="step", max_columns=5)._repr_html_()
    assert html.count("<table") == 2  # 4 + 3 other columns, each with `step`
    assert html.count(">step</th>") == 2
    assert "(1/2)" in html and "(2/2)" in html


def test_saga_steps_come_from_the_saga_definition() -> None:
    from ecommerce.domain.saga import ORDER_SAGA

    df = tables.saga_steps()
    assert list(df["step"]) == [st.name for st in ORDER_SAGA]
    charge = df.set_index("step").loc["charge_payment"]
    assert charge["request"].startswith("POST /api/payments")
    assert charge["compensation"] == "refund_payment"
    assert charge["idempotency key"] == "<saga>:charge_payment"
    assert df.set_index("step").loc["confirm_order", "pivot"] == "✔"


def test_before_after_lines_up_values_and_changes() -> None:
    before = pd.DataFrame({"sku": ["A", "B"], "available": [10, 5], "reserved": [0, 1]})
    after = pd.DataFrame({"sku": ["A", "B", "C"], "available": [9, 5, 7], "reserved": [1, 1, 0]})
    df = tables.before_after(before, after, "sku", ["available", "reserved"])
    assert list(df.columns) == ["sku", "available before", "available after", "available change",
                                "reserved before", "reserved after", "reserved change"]
    row = df.set_index("sku")
    assert row.loc["A", "available change"] == -1 and row.loc["A", "reserved change"] == 1
    assert row.loc["C", "available change"] == 7  # new: counted from nothing


def _log(rows: list[tuple[str, str, dict]]) -> pd.DataFrame:
    return pd.DataFrame([{"stream_id": s, "event_type": t, "data": d} for s, t, d in rows])


def test_compensations_undone_counts_what_was_given_back() -> None:
    log = _log([("order-1", "OrderCancelled", {}), ("order-2", "OrderCancelled", {}),
                ("reservation-1", "StockReleased", {"quantity": 2}),
                ("payment-alice", "PaymentRefunded", {"amount": 8900}),
                ("payment-bob", "PaymentVoided", {}), ("user-1", "UserCreated", {})])
    df = tables.compensations_undone(log).set_index("compensation")
    assert df.loc["cancel_order", "events"] == 2
    assert df.loc["release_stock", "undid"] == "2 units held for nobody"
    assert df.loc["refund_payment", "events"] == 2
    assert "8,900 cents" in df.loc["refund_payment", "undid"]


def test_pattern_complexity_counts_each_patterns_streams_and_manifests() -> None:
    log = _log([("saga-1", "SagaStarted", {}), ("order-1", "OrderPlaced", {}),
                ("user-1", "UserCreated", {}), ("user-2", "UserCreated", {})])
    df = tables.pattern_complexity(log)
    assert list(df.index) == ["Saga", "CQRS", "Event Sourcing"]
    assert df.loc["Saga", "events"] == 2 and df.loc["Saga", "streams"] == 2
    assert df.loc["CQRS", "event types"] == 1 and df.loc["CQRS", "workloads"] == 2
    assert df.loc["Event Sourcing", "events"] == 4  # the whole log
    assert list(tables.categories(log)) == ["saga", "order", "user", "user"]
