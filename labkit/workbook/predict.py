"""Predict, then observe: before a failure scenario (02) or a replay (04) the student picks the
outcome they expect; after it ran, `reveal` says whether they were right.

    guess = predict.ask("payment-declined: 어떤 보상이?", COMPENSATIONS)
    widgets.prediction(guess)          # radio buttons; each click calls guess.pick(option)
    guess.pick(guess.choice)           # the same function without the widget (or an option / number)
    ... run the scenario ...
    predict.reveal(guess, observed)    # ✅ / ❌ with what happened; never raises

Options are plain strings; `observed` must be written the same way (e.g. `" → ".join(steps)`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The compensations a failed order saga may run, in the order the orchestrator runs them.
COMPENSATIONS = ("없음 (none)", "cancel_order", "release_stock → cancel_order",
                 "refund_payment → release_stock → cancel_order")
#: How a saga may end.
SAGA_ENDS = ("completed", "compensated", "stuck")


class PredictionError(ValueError):
    """Not one of the options; the message lists them."""


@dataclass
class Prediction:
    """A question, its options, and the student's pick (None until they pick)."""

    question: str
    options: list[str]
    choice: str | None = None
    history: list[str] = field(default_factory=list)

    def pick(self, option: str | int | None) -> Prediction:
        """Choose an option by its text or its number (1 = the first); None keeps the pick."""
        if option is None:
            return self
        if isinstance(option, int) and not isinstance(option, bool):
            if not 1 <= option <= len(self.options):
                raise PredictionError(f"choose 1..{len(self.options)}: {self._listing()}")
            option = self.options[option - 1]
        if option not in self.options:
            raise PredictionError(f"{option!r} is not an option; choose one of: {self._listing()}")
        self.choice = option
        self.history.append(option)
        return self

    def _listing(self) -> str:
        return "; ".join(f"{i}. {o}" for i, o in enumerate(self.options, 1))

    def __repr__(self) -> str:
        picked = self.choice if self.choice is not None else "(아직 고르지 않음 / not chosen yet)"
        return f"예측 (prediction): {self.question}\n  → {picked}"


def ask(question: str, options: Sequence[str]) -> Prediction:
    """A new prediction to make (show it with `widgets.prediction`, or call `.pick`)."""
    opts = [str(o) for o in options]
    if len(opts) < 2 or len(set(opts)) != len(opts):
        raise PredictionError("a prediction needs at least two different options")
    return Prediction(question, opts)


@dataclass
class Verdict:
    """What happened next to what was predicted: right is True, False, or None (no pick)."""

    question: str
    predicted: str | None
    observed: str
    right: bool | None
    explain: str = ""

    @property
    def line(self) -> str:
        if self.right is None:
            head = f"➖ 예측하지 않았습니다 (no prediction) — 실제 (observed): {self.observed}"
        elif self.right:
            head = f"✅ 예측이 맞았습니다 (right): {self.observed}"
        else:
            head = f"❌ 예측 (predicted): {self.predicted} — 실제 (observed): {self.observed}"
        return head + (f"\n   {self.explain}" if self.explain else "")

    def __repr__(self) -> str:
        return self.line

    def _repr_html_(self) -> str:
        color = {True: "#1b5e20", False: "#b71c1c", None: "#555"}[self.right]
        return (f'<div style="white-space: pre-wrap; color: {color}; font-size: 1.05em;">'
                f"<i>{html.escape(self.question)}</i>\n{html.escape(self.line)}</div>")


def reveal(prediction: Prediction, observed: str, explain: str = "") -> Verdict:
    """Compare the pick with what the system did (`observed`, written like an option)."""
    right = None if prediction.choice is None else prediction.choice == observed
    return Verdict(prediction.question, prediction.choice, observed, right, explain)


def compensations(steps: Sequence[str]) -> str:
    """The compensations a saga ran, written like a `COMPENSATIONS` option."""
    return " → ".join(steps) if steps else COMPENSATIONS[0]
