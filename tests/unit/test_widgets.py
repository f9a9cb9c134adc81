"""Widget wiring: each panel calls the public lab API it promises, with what the student chose.

A fake lab records calls here (the one place a fake is fine: this tests the wiring; the
notebooks' twin cells run the same functions against the real system).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from labkit.workbook import widgets
from tests.waiting import wait_until


class FakeSaga:
    def __init__(self, calls: list[tuple[Any, ...]], timeout: bool = False) -> None:
        self.calls, self.timeout = calls, timeout

    def place_order(self, user: str, lines: list[tuple[str, int]]) -> str:
        self.calls.append(("place_order", user, lines))
        return "saga-1"

    def wait(self, saga_id: str, timeout: float = 30.0) -> dict[str, Any]:
        self.calls.append(("wait", saga_id, timeout))
        if self.timeout:
            raise TimeoutError(f"saga {saga_id} is still running")
        return {"saga_id": saga_id, "status": "compensated", "failure": "declined"}


class FakeLab:
    def __init__(self, fail_status: bool = False, saga_timeout: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.saga = FakeSaga(self.calls, saga_timeout)
        self.fail_status = fail_status
        self.users = [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]

    def query(self, name: str, **params: Any) -> dict[str, Any]:
        self.calls.append(("query", name, params))
        offset, limit = params.get("offset", 0), params.get("limit", 100)
        return {"users": self.users[offset:offset + limit], "total": len(self.users)}

    def stock(self) -> pd.DataFrame:
        self.calls.append(("stock",))
        return pd.DataFrame({"sku": ["KEYBOARD-MX", "MONITOR-27"], "available": [5, 2]})

    def fire(self, scenario: str) -> str:
        self.calls.append(("fire", scenario))
        return f"saga-{scenario}"

    def status(self) -> pd.DataFrame:
        self.calls.append(("status",))
        if self.fail_status:
            raise RuntimeError("no lab")
        return pd.DataFrame([{"service": "query-service", "status": "ready"}])


def text(out: Any) -> str:
    return "".join(o.get("text", "") for o in out.outputs if o.get("output_type") == "stream")


@pytest.fixture(autouse=True)
def named_customers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """alice and bob are registered on their first order: recorded here, not over HTTP."""
    ensured: list[str] = []
    monkeypatch.setattr(widgets, "_ensure_named", lambda lab, user: ensured.append(user))
    return ensured


def test_order_form_places_the_chosen_order_as_a_saga_and_shows_how_it_ended(named_customers):
    lab = FakeLab()
    panel = widgets.order_form(lab)
    parts = panel.parts
    assert [o[1] for o in parts["user"].options] == ["alice", "bob"]
    assert list(parts["sku"].options) == ["KEYBOARD-MX", "MONITOR-27"]
    parts["user"].value = "bob"
    parts["sku"].value = "MONITOR-27"
    parts["quantity"].value = 3
    parts["button"].click()
    assert named_customers == ["bob"]
    assert ("place_order", "bob", [("MONITOR-27", 3)]) in lab.calls
    assert ("wait", "saga-1", widgets.SAGA_WAIT_S) in lab.calls
    shown = text(parts["out"])
    assert "saga-1" in shown and "compensated" in shown and "declined" in shown


def test_order_form_reports_a_saga_still_running_and_reloads_options():
    lab = FakeLab(saga_timeout=True)
    panel = widgets.order_form(lab)
    panel.parts["button"].click()
    assert "still running" in text(panel.parts["out"])
    n = sum(1 for c in lab.calls if c[0] == "stock")
    panel.parts["reload"].click()
    assert sum(1 for c in lab.calls if c[0] == "stock") == n + 1


def test_order_form_without_skus_says_what_to_do_and_places_nothing():
    lab = FakeLab()
    lab.stock = lambda: pd.DataFrame({"sku": []})  # type: ignore[method-assign]
    panel = widgets.order_form(lab)
    panel.parts["button"].click()
    assert not [c for c in lab.calls if c[0] == "place_order"]
    assert "choose a user and a SKU" in text(panel.parts["out"])


def test_alice_and_bob_stay_offered_among_many_users_and_others_can_be_searched():
    lab = FakeLab()
    lab.users = [{"id": f"u{i}", "name": f"Student {i}", "email": f"s{i}@example.com"}
                 for i in range(2500)]
    lab.users[3:3] = [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]
    panel = widgets.order_form(lab)
    users = [o[1] for o in panel.parts["user"].options]
    assert users[:2] == ["alice", "bob"]
    assert users[2:4] == ["u2499", "u2498"]  # then the newest
    assert len(users) == 2 + widgets.SHOWN_USERS
    panel.parts["search"].value = "Student 17"  # newest matches first, at most SHOWN_USERS
    found = [o[1] for o in panel.parts["user"].options]
    assert found[0] == "u1799" and len(found) == widgets.SHOWN_USERS and "u18" not in found
    panel.parts["search"].value = "s17@example"  # an old user, by email
    assert [o[1] for o in panel.parts["user"].options] == ["u17"]
    assert "users match 's17@example'" in text(panel.parts["out"])
    panel.parts["search"].value = "bo"
    assert panel.parts["user"].options[0][1] == "bob"


def test_order_form_labels_are_not_cut_off():
    panel = widgets.order_form(FakeLab())
    for name in ("button", "reload"):
        assert panel.parts[name].layout.width == "auto"
    for name in ("search", "user", "sku", "quantity"):
        assert panel.parts[name].style.description_width == "initial"


def test_failure_buttons_fire_their_scenario():
    lab = FakeLab()
    panel = widgets.failure_buttons(lab, ["happy", "payment-declined"])
    buttons = panel.parts["buttons"]
    assert list(buttons) == ["happy", "payment-declined"]
    assert buttons["happy"].button_style == "success"
    assert buttons["payment-declined"].button_style == "danger"
    buttons["payment-declined"].click()
    assert ("fire", "payment-declined") in lab.calls
    assert ("wait", "saga-payment-declined", widgets.SAGA_WAIT_S) in lab.calls
    assert "lab.fire('payment-declined')" in text(panel.parts["out"])
    panel.parts["clear"].click()
    assert panel.parts["out"].outputs == ()


def test_failure_buttons_default_to_every_scenario_lab_fire_knows():
    from labkit.lab.scenarios import SCENARIOS

    panel = widgets.failure_buttons(FakeLab())
    assert list(panel.parts["buttons"]) == list(SCENARIOS)


def test_errors_inside_callbacks_are_shown_in_the_panel_not_raised():
    lab = FakeLab()

    def broken(scenario: str) -> str:
        raise RuntimeError("payment-service is down")

    lab.fire = broken  # type: ignore[method-assign]
    panel = widgets.failure_buttons(lab, ["happy"])
    panel.parts["buttons"]["happy"].click()  # must not raise
    assert "RuntimeError: payment-service is down" in text(panel.parts["out"])


def test_status_panel_shows_lab_status_and_refreshes_on_demand():
    lab = FakeLab()
    panel = widgets.status_panel(lab, interval=0.05)
    assert lab.calls.count(("status",)) == 1  # drawn once when created
    out = panel.parts["out"]
    assert out.outputs and "query-service" in out.outputs[-1]["data"]["text/plain"]
    panel.parts["refresh"].click()
    assert lab.calls.count(("status",)) == 2


def test_status_panel_auto_refresh_starts_and_stops():
    lab = FakeLab()
    panel = widgets.status_panel(lab, interval=0.02)
    panel.parts["auto"].value = True
    wait_until(lambda: lab.calls.count(("status",)) >= 3, what="three automatic refreshes")
    panel.parts["auto"].value = False
    assert panel.parts["stop"].is_set()


def test_status_panel_shows_errors():
    panel = widgets.status_panel(FakeLab(fail_status=True))
    assert "no lab" in text(panel.parts["out"])


@pytest.mark.parametrize("fn", [widgets.order_form, widgets.status_panel])
def test_panels_are_widgets(fn):
    import ipywidgets

    assert isinstance(fn(FakeLab()), ipywidgets.Widget)
