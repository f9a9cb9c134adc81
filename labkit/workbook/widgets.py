"""ipywidgets panels for the notebooks. They only call labkit's public API (`lab.*`).

Every panel has a plain twin in the notebook that calls the same function, because an error
inside a widget callback is shown in the panel, never raised: nbval cannot see it.

    widgets.order_form(lab)        # user, SKU, quantity -> lab.saga.place_order(...)
    widgets.failure_buttons(lab)   # one button per scenario -> lab.fire(name)
    widgets.status_panel(lab)      # lab.status(), refreshed on demand or every few seconds
    widgets.prediction(guess)      # radio buttons -> guess.pick(option) (labkit.workbook.predict)

Each function returns the panel widget; its inner widgets are in `panel.parts` (tests click
them with `parts["button"].click()`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

#: How long a panel waits for a saga to end before showing where it is.
SAGA_WAIT_S = 15.0


def _say(out: w.Output, text: str) -> None:
    out.append_stdout(text.rstrip("\n") + "\n")


def _show(out: w.Output, obj: Any) -> None:
    out.append_display_data(obj)


def _clear(out: w.Output) -> None:
    out.outputs = ()  # the widget's own state: works with or without a kernel


def _guard(out: w.Output, action: Callable[[], None]) -> None:
    """Run a callback; show any error in the panel (widgets must not die silently)."""
    try:
        action()
    except Exception as exc:  # shown to the student, with the type
        _say(out, f"❌ {type(exc).__name__}: {exc}")


def _saga_summary(view: dict[str, Any]) -> str:
    status = view.get("status", "?")
    icon = {"completed": "✅", "compensated": "↩️", "failed": "❌"}.get(status, "⏳")
    failure = view.get("failure") or view.get("reason")
    return f"{icon} saga {view.get('saga_id', '')}: {status}" + (f" ({failure})" if failure else "")


def _finish_saga(lab: Any, out: w.Output, saga_id: str) -> None:
    _say(out, f"saga {saga_id} started; waiting for the orchestrator...")
    try:
        view = lab.saga.wait(saga_id, timeout=SAGA_WAIT_S)
    except TimeoutError as exc:
        _say(out, f"⏳ {exc}")
        return
    _say(out, _saga_summary(view))


# ---- order form -----------------------------------------------------------------------------------
#: The lab's named customers, always offered first (created on first use, as the scenarios do).
NAMED_CUSTOMERS = (("alice", "alice — 잔액 넉넉 (rich)"), ("bob", "bob — 잔액 10.00 (poor)"))
#: How many other users the list shows (the newest, or those matching the search).
SHOWN_USERS = 50
_PAGE = 1000


def _label(u: dict[str, Any]) -> str:
    return f"{u.get('name', '')} ({u['id']})"


def find_users(lab: Any, text: str = "", limit: int = SHOWN_USERS) -> list[dict[str, Any]]:
    """Active users from the read model: the newest `limit`, or (with `text`) those whose id,
    name or email contains it, newest first."""
    needle = text.strip().lower()
    first = lab.query("users", status="active", limit=1)
    total = int(first.get("total", len(first.get("users", []))))
    found: list[dict[str, Any]] = []
    end = total
    while end > 0 and len(found) < limit:  # from the newest page backwards
        offset = max(0, end - _PAGE)
        page = lab.query("users", status="active", limit=end - offset, offset=offset)["users"]
        for u in reversed(page):
            hay = f"{u.get('id', '')} {u.get('name', '')} {u.get('email', '')}".lower()
            if not needle or needle in hay:
                found.append(u)
        end = offset
    return found[:limit]


def _user_options(lab: Any, text: str = "") -> list[tuple[str, str]]:
    named = [(label, uid) for uid, label in NAMED_CUSTOMERS
             if not text.strip() or text.strip().lower() in label.lower()]
    try:
        others = find_users(lab, text)
    except Exception:
        others = []
    seen = {uid for _, uid in named}
    return named + [(_label(u), u["id"]) for u in others if u["id"] not in seen]


def _ensure_named(lab: Any, user: str) -> None:
    """alice and bob exist before their first order (user + account), as `lab.fire` does."""
    from labkit.lab.scenarios import ALICE, BOB, POOR_BALANCE, RICH_BALANCE, ensure_customer

    if user in (ALICE, BOB):
        ensure_customer(lab, user, RICH_BALANCE if user == ALICE else POOR_BALANCE)


def _sku_options(lab: Any) -> list[str]:
    try:
        stock = lab.stock()
    except Exception:
        return []
    return [str(s) for s in stock["sku"]] if len(stock) else []


def order_form(lab: Any) -> w.VBox:
    """Place an order as a saga: user, SKU, quantity -> `lab.saga.place_order(user, [(sku, n)])`.

    alice and bob are always offered; `찾기 search` finds any other user by id, name or email.
    """
    wide = {"description_width": "initial"}
    search = w.Text(placeholder="id, 이름, 이메일 (Enter)", description="찾기 search",
                    continuous_update=False, style=wide, layout={"width": "24em"})
    user = w.Dropdown(options=_user_options(lab), description="사용자 user", style=wide,
                      layout={"width": "24em"})
    sku = w.Dropdown(options=_sku_options(lab), description="상품 SKU", style=wide,
                     layout={"width": "24em"})
    quantity = w.BoundedIntText(value=1, min=1, max=1000, description="수량 qty", style=wide,
                                layout={"width": "12em"})
    auto = {"width": "auto"}  # a button as wide as its label: never "주문하기 (place …"
    button = w.Button(description="주문하기 (place order)", button_style="primary",
                      icon="shopping-cart", layout=auto)
    reload_ = w.Button(description="목록 새로고침 (reload)", icon="refresh", layout=auto)
    out = w.Output(layout={"border": "1px solid #ccc", "min_height": "3em"})

    def place(_: Any = None) -> None:
        def act() -> None:
            if not user.value or not sku.value:
                _say(out, "사용자와 상품을 고르세요 / choose a user and a SKU (no users? create "
                          "one with lab.command('create-user', ...))")
                return
            _ensure_named(lab, user.value)
            saga_id = lab.saga.place_order(user.value, [(sku.value, int(quantity.value))])
            _finish_saga(lab, out, saga_id)

        _guard(out, act)

    def find(_: Any = None) -> None:
        def act() -> None:
            user.options = _user_options(lab, search.value)
            _say(out, f"{len(user.options)} users match {search.value!r}" if search.value
                 else f"{len(user.options)} users (alice, bob, the newest {SHOWN_USERS})")

        _guard(out, act)

    def reload(_: Any = None) -> None:
        def refill() -> None:
            user.options = _user_options(lab, search.value)
            sku.options = _sku_options(lab)

        _guard(out, refill)

    button.on_click(place)
    reload_.on_click(reload)
    search.observe(find, names="value")
    panel = w.VBox([w.HTML("<b>주문 폼 (Saga)</b>"), search, user, sku, quantity,
                    w.HBox([button, reload_], layout={"flex_flow": "row wrap"}), out])
    panel.parts = {"search": search, "user": user, "sku": sku, "quantity": quantity,
                   "button": button, "reload": reload_, "out": out}
    return panel


# ---- failure buttons --------------------------------------------------------------------------------
def scenario_names() -> list[str]:
    """The saga scenarios `lab.fire` knows (`labkit.lab.scenarios.SCENARIOS`)."""
    from labkit.lab import scenarios

    names = getattr(scenarios, "SCENARIOS", None) or getattr(scenarios, "NAMES", None) or ()
    return list(names)


def failure_buttons(lab: Any, scenarios: Sequence[str] | None = None) -> w.VBox:
    """One button per saga scenario (happy path and failures) -> `lab.fire(name)`."""
    names = list(scenarios) if scenarios is not None else scenario_names()
    out = w.Output(layout={"border": "1px solid #ccc", "min_height": "3em"})
    buttons: dict[str, w.Button] = {}

    def make(name: str) -> w.Button:
        style = "success" if name == "happy" else "danger"
        button = w.Button(description=name, button_style=style, tooltip=f"lab.fire({name!r})",
                          layout={"width": "auto"})

        def fire(_: Any = None) -> None:
            def act() -> None:
                _say(out, f"lab.fire({name!r})")
                saga_id = lab.fire(name)
                _finish_saga(lab, out, saga_id)

            _guard(out, act)

        button.on_click(fire)
        buttons[name] = button
        return button

    row = w.HBox([make(n) for n in names], layout={"flex_flow": "row wrap"})
    clear = w.Button(description="지우기 (clear)", icon="eraser")
    clear.on_click(lambda _: _clear(out))
    panel = w.VBox([w.HTML("<b>장애 시나리오 (failure scenarios)</b>"), row, clear, out])
    panel.parts = {"buttons": buttons, "clear": clear, "out": out}
    return panel


# ---- live status ----------------------------------------------------------------------------------------
def status_panel(lab: Any, interval: float = 2.0) -> w.VBox:
    """`lab.status()` as a table: a refresh button and an auto-refresh toggle."""
    out = w.Output()
    refresh = w.Button(description="새로고침 (refresh)", icon="refresh")
    auto = w.ToggleButton(value=False, description=f"자동 ({interval:g}s)", icon="play")
    stamp = w.HTML()
    stop = threading.Event()

    def show(_: Any = None) -> None:
        import time

        try:
            table = lab.status()
        except Exception as exc:
            _clear(out)
            _say(out, f"❌ {type(exc).__name__}: {exc}")
            return
        _clear(out)
        _show(out, table)
        stamp.value = f"<small>updated {time.strftime('%H:%M:%S')}</small>"

    def loop() -> None:
        while not stop.wait(interval):
            show()

    def toggle(change: dict[str, Any]) -> None:
        if change["new"]:
            stop.clear()
            threading.Thread(target=loop, name="labkit-status-panel", daemon=True).start()
            auto.icon = "pause"
        else:
            stop.set()
            auto.icon = "play"

    refresh.on_click(show)
    auto.observe(toggle, names="value")
    show()
    panel = w.VBox([w.HBox([refresh, auto, stamp]), out])
    panel.parts = {"refresh": refresh, "auto": auto, "out": out, "stop": stop}
    return panel


# ---- predict, then observe ------------------------------------------------------------------------
def prediction(*guesses: Any) -> w.VBox:
    """Radio buttons for one or more `predict.Prediction`s; a click calls `guess.pick(option)`.

    Nothing is pre-selected: a student who does not choose has made no prediction."""
    rows: list[w.Widget] = []
    choices: list[w.RadioButtons] = []
    out = w.Output()
    for guess in guesses:
        radio = w.RadioButtons(options=list(guess.options), value=None,
                               layout={"width": "max-content"})

        def picked(change: dict[str, Any], guess: Any = guess) -> None:
            if change["new"] is not None:
                _guard(out, lambda: guess.pick(change["new"]))

        radio.observe(picked, names="value")
        rows += [w.HTML(f"<b>🤔 {_escape(guess.question)}</b>"), radio]
        choices.append(radio)
    panel = w.VBox([*rows, out])
    panel.parts = {"choices": choices, "out": out}
    return panel


def _escape(text: str) -> str:
    import html

    return html.escape(text)
