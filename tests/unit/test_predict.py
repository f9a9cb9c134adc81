"""Predict, then observe (02's failure scenarios, 04's replays): the pick the widget makes is
the pick the plain cell makes, and the verdict says right, wrong or no prediction."""

from __future__ import annotations

import pytest

from labkit.workbook import predict, widgets


def test_a_pick_by_text_or_number_and_the_verdict() -> None:
    guess = predict.ask("payment-declined: 어떤 보상이?", predict.COMPENSATIONS)
    assert predict.reveal(guess, "cancel_order").right is None  # no pick: no verdict
    assert "예측하지 않았습니다" in repr(predict.reveal(guess, "cancel_order"))
    guess.pick(3)
    assert guess.choice == "release_stock → cancel_order"
    right = predict.reveal(guess, predict.compensations(["release_stock", "cancel_order"]))
    assert right.right is True and right.line.startswith("✅")
    wrong = predict.reveal(guess, predict.compensations([]))
    assert wrong.right is False and "없음 (none)" in wrong.line and "release_stock" in wrong.line
    assert guess.pick(None).choice == "release_stock → cancel_order"  # None keeps the pick


def test_a_pick_that_is_not_an_option_says_which_are() -> None:
    guess = predict.ask("how does it end?", predict.SAGA_ENDS)
    with pytest.raises(predict.PredictionError, match=r"1\. completed; 2\. compensated"):
        guess.pick("done")
    with pytest.raises(predict.PredictionError, match=r"choose 1\.\.3"):
        guess.pick(4)
    with pytest.raises(predict.PredictionError):
        predict.ask("one option only", ["a"])


def test_the_widget_picks_through_the_same_function_and_starts_with_no_pick() -> None:
    first = predict.ask("q1", ["a", "b"])
    second = predict.ask("q2", ["x", "y", "z"])
    panel = widgets.prediction(first, second)
    radios = panel.parts["choices"]
    assert [r.value for r in radios] == [None, None] and first.choice is None
    radios[1].value = "z"
    radios[0].value = "b"
    assert (first.choice, second.choice) == ("b", "z") and second.history == ["z"]
