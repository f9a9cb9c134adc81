"""Student code in the running lab: plugins deployed into real processes, and every exercise
check with a right and a wrong answer (✅ / ❌ / ⏳, never an exception)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.lab import Lab, LabError
from labkit.lab.challenges.skipped_events import caught_up
from labkit.lab.plugins import PluginError
from labkit.runtime.local import PluginFailed, RuntimeErrorWithHint
from labkit.workbook import exercises as ex
from tests.integration.labs import full_lab
from tests.waiting import wait_until


def notify_plugin():  # the 02 exercise's solution (naive handler: not idempotent)
    from ecommerce.domain.saga import StepDef
    from ecommerce.plugins import handler, saga_step

    def notify(ctx, body):
        ctx.append(f"notification-{body['order_id']}", "CustomerNotified",
                   {"order_id": body["order_id"], "user_id": body.get("user_id")})
        return {"status": "sent"}

    def retract(ctx, body):
        ctx.append(f"notification-{body['order_id']}", "CustomerNotificationRetracted",
                   {"order_id": body["order_id"]})
        return {"status": "retracted"}

    handler("user-service", "notify_customer", notify)
    handler("user-service", "retract_notice", retract)
    saga_step(StepDef(
        "notify_customer", "user-service", "notify customer", "retract_notice",
        request=lambda saga: ("POST", "/api/plugins/notify_customer",
                              {"order_id": saga.order_id, "user_id": saga.user_id}),
        compensation_request=lambda saga: ("POST", "/api/plugins/retract_notice",
                                           {"order_id": saga.order_id}),
        effects=("CustomerNotified",), compensation_effects=("CustomerNotificationRetracted",)),
        after="create_order")


IDEMPOTENT_SOURCE = '''
from ecommerce.domain.idempotency import event_id
from ecommerce.plugins import handler

def notify(ctx, body):
    ctx.append(f"notification-{body['order_id']}", "CustomerNotified",
               {"order_id": body["order_id"], "user_id": body.get("user_id")},
               event_id=event_id("notify", body["order_id"]))
    return {"status": "sent"}

handler("user-service", "notify_customer", notify)
'''


def notify_misplaced():  # a wrong answer: the step after reserve_stock, not after create_order
    from ecommerce.domain.saga import StepDef
    from ecommerce.plugins import handler, saga_step

    handler("user-service", "notify_customer", lambda ctx, body: {"status": "sent"})
    saga_step(StepDef("notify_customer", "user-service", "notify customer",
                      request=lambda saga: ("POST", "/api/plugins/notify_customer", {})),
              after="reserve_stock")


def top_products():
    from ecommerce.domain.readmodel import Incr
    from ecommerce.plugins import projection
    from ecommerce.projections.base import Projection

    def placed(e):
        return [Incr("top_products", ln["sku"], {"units": int(ln["quantity"])})
                for ln in e.data["lines"]]

    projection(Projection("top-products", ("top_products",), {"OrderPlaced": placed}))


def top_products_wrong():  # counts order lines, not units
    from ecommerce.domain.readmodel import Incr
    from ecommerce.plugins import projection
    from ecommerce.projections.base import Projection

    def placed(e):
        return [Incr("top_products", ln["sku"], {"units": 1}) for ln in e.data["lines"]]

    projection(Projection("top-products", ("top_products",), {"OrderPlaced": placed}))


def loyalty_wrong():  # keeps the old field name
    from ecommerce.plugins import upcaster

    upcaster("LoyaltyPointsAwarded", 1, lambda d: {**d, "reason": "unknown"})


def orders_per_user():
    from ecommerce.domain.readmodel import Incr
    from ecommerce.plugins import projection
    from ecommerce.projections.base import Projection

    def placed(e):
        return [Incr("orders_per_user", e.data["user_id"], {"orders": 1})]

    projection(Projection("orders-per-user", ("orders_per_user",), {"OrderPlaced": placed}))


def orders_per_user_wrong():
    from ecommerce.domain.readmodel import Incr
    from ecommerce.plugins import projection
    from ecommerce.projections.base import Projection

    def confirmed(e):  # counts confirmations, not orders placed
        return [Incr("orders_per_user", e.stream_id, {"orders": 1})]

    projection(Projection("orders-per-user", ("orders_per_user",), {"OrderConfirmed": confirmed}))


def loyalty_upcaster():
    from ecommerce.plugins import upcaster

    upcaster("LoyaltyPointsAwarded", 1, lambda d: {"points": d["pts"], "reason": "unknown"})


def increment(store, stream):  # the 04 exercise's solution
    from ecommerce.domain.events import NewEvent
    from ecommerce.store.base import ConcurrencyError

    while True:
        events = store.read_stream(stream)
        value = events[-1].data["value"] if events else 0
        try:
            store.append(stream, [NewEvent("Incremented", {"value": value + 1})],
                         events[-1].version if events else "none")
            return value + 1
        except ConcurrencyError:
            continue


def blind(store, stream):  # a wrong answer: no expected version, updates get lost
    from ecommerce.domain.events import NewEvent

    events = store.read_stream(stream)
    value = events[-1].data["value"] if events else 0
    store.append(stream, [NewEvent("Incremented", {"value": value + 1})], "any")
    return value + 1


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with full_lab(tmp_path_factory.mktemp("plugins")) as lab:
        yield lab


def test_a_saga_step_with_its_compensation_runs_in_the_live_saga(lab) -> None:
    assert ex.saga_step_added(lab).ok is None  # nothing deployed yet: not done, no error
    lab.deploy_code(notify_misplaced)
    misplaced = ex.saga_step_added(lab)
    assert misplaced.ok is False and "reserve_stock → notify_customer" in misplaced.message
    lab.remove_code("notify_misplaced")
    out = lab.deploy_code(notify_plugin)
    assert "saga_step notify_customer" in out["registered"]
    assert "saga-orchestrator" in out["restarted"] and "user-service" in out["restarted"]
    assert ex.saga_step_added(lab).ok is True
    assert ex.compensation_plan(lab, ["retract_notice", "cancel_order"]).ok is True
    wrong = ex.compensation_plan(lab, ["cancel_order", "retract_notice"])
    assert wrong.ok is False and "recorded ['retract_notice', 'cancel_order']" in wrong.message
    assert ex.compensation_plan(lab, None).ok is None
    # the naive handler double-notifies on a retry; the idempotent one does not
    naive = ex.handler_idempotent(lab)
    assert naive.ok is False and "'CustomerNotified', 'CustomerNotified'" in naive.message
    lab.deploy_code(IDEMPOTENT_SOURCE, name="notify_idempotent", restart=["user-service"])
    assert ex.handler_idempotent(lab).ok is True
    lab.remove_code("notify_idempotent", restart=["user-service"])
    # notify_plugin's handler serves again, and this kernel knows it (it had forgotten it)
    again = ex.handler_idempotent(lab)
    assert again.ok is False and "'CustomerNotified', 'CustomerNotified'" in again.message
    wrong_name = lab.remove_code("notify_customer")
    assert wrong_name["removed"] is False
    assert "is registered by plugin notify_plugin: lab.remove_code('notify_plugin')" in \
        wrong_name["note"]
    lab.remove_code("notify_plugin")
    assert ex.saga_step_added(lab).ok is None


def test_a_projection_is_served_by_query_service_and_checked_against_the_log(lab) -> None:
    lab.fire("happy", wait=True)
    lab.deploy_code(orders_per_user_wrong, name="orders_per_user")
    assert ex.orders_per_user_view(lab).ok is False
    lab.deploy_code(orders_per_user)
    assert lab.replay(["orders-per-user"])["events_count"] > 0
    assert ex.orders_per_user_view(lab).ok is True
    lab.remove_code("orders_per_user")
    assert ex.orders_per_user_view(lab).ok is None
    lab.fire("happy", lines=[("MOUSE-WL", 3)], wait=True)
    # The removed plugin's projection is paused, not behind: whatever waits for the read side
    # to catch up (a challenge, a check) is not held by it.
    head = lab.saga.store.last_position()
    wait_until(lambda: caught_up(lab, head), timeout=30, what="the read side at the head")
    cps = lab.query("checkpoints")
    assert "orders-per-user" in cps["paused"] and "orders-per-user" not in cps["checkpoints"]
    assert cps["paused"]["orders-per-user"]["position"] < head
    assert "orders-per-user" not in set(lab.checkpoints()["projection"])
    lab.deploy_code(top_products_wrong, name="top_products")
    assert ex.top_products_view(lab).ok is False
    lab.deploy_code(top_products)
    lab.replay(["top-products"])
    assert ex.top_products_view(lab).ok is True
    lab.remove_code("top_products")


def test_bad_plugin_code_says_which_line_and_is_not_deployed(lab) -> None:
    with pytest.raises(PluginError, match=r"plugin broken\.py failed at line 3: NameError"):
        lab.deploy_code("from ecommerce.plugins import upcaster\n\nundefined_name\n", name="broken")
    assert not (lab.runtime.plugins_dir / "broken.py").exists()
    # written behind the lab's back: the service says so in /readyz, remove_code clears it
    (lab.runtime.plugins_dir / "sneaky.py").write_text("1/0\n")
    with pytest.raises(PluginFailed, match=r"sneaky\.py failed at line 1: ZeroDivisionError"):
        lab.runtime.restart(["query-service"])
    lab.remove_code("sneaky", restart=["query-service"])
    assert lab.http("query-service").get("/readyz").status_code == 200


BREAKS_ON_BOOM = '''
from ecommerce.domain.readmodel import Merge
from ecommerce.plugins import projection
from ecommerce.projections.base import Projection

def created(e):
    if e.data["name"] == "Boom":
        raise ValueError("no booms")
    return [Merge("names_seen", e.data["user_id"], {"name": e.data["name"]})]

projection(Projection("names-seen", ("names_seen",), {"UserCreated": created}))
'''


def test_a_plugin_projection_that_fails_says_so_where_the_student_waits(lab) -> None:
    lab.deploy_code(BREAKS_ON_BOOM, name="names_plugin")
    try:
        boom = lab.command("create-user", name="Boom", email="boom@example.com")
        with pytest.raises(LabError) as stuck:
            lab.wait_for_projection(boom["position"], timeout=5)
        said = str(stuck.value)
        assert "event-processor is not ready" in said
        assert "ValueError: no booms at line 8 of plugin names_plugin.py" in said
        assert "lab.remove_code('names_plugin')" in said
        detail = next(r["detail"] for r in lab.runtime.status() if r["service"] == "event-processor")
        assert detail.startswith("projections: ProjectionError: projection 'names-seen'")
        # a restart (or `lab.up()`) that waits for it says why it is not ready, and where to look
        with pytest.raises(RuntimeErrorWithHint) as waited:
            lab.runtime.restart(["event-processor"], timeout=5)
        assert "not ready after 5s: event-processor (event-processor: projections: " \
            "ProjectionError: projection 'names-seen'" in str(waited.value)
        assert str(waited.value).endswith("see `labkit logs event-processor`")
    finally:
        lab.remove_code("names_plugin")
    lab.wait_for_projection(boom["position"], timeout=30)  # the lab's own catch up again
    assert lab.query(f"users/{boom['user_id']}")["name"] == "Boom"


def test_deploying_while_the_processor_is_down_says_when_the_plugin_runs(lab) -> None:
    lab.kill("event-processor")
    try:
        out = lab.deploy_code(BREAKS_ON_BOOM, name="names_later")
        assert "not running, so not restarted: event-processor; it loads the plugin when " \
            "started (lab.up())" in out["note"]
    finally:
        lab.remove_code("names_later")
        lab.up()


def test_upcaster_time_travel_and_concurrency_checks(lab) -> None:
    assert ex.upcaster_applied(lab).ok is None
    lab.deploy_code(loyalty_wrong, name="loyalty_upcaster", restart=["event-store-api"])
    assert ex.upcaster_applied(lab).ok is False
    lab.deploy_code(loyalty_upcaster, restart=["event-store-api"])
    assert ex.upcaster_applied(lab).ok is True
    lab.remove_code("loyalty_upcaster", restart=["event-store-api"])

    def status_at(events, position):
        status = None
        for e in events:
            if e["position"] > position:
                break
            status = {"OrderPlaced": "PENDING", "OrderConfirmed": "CONFIRMED",
                      "OrderCancelled": "CANCELLED"}.get(e["event_type"], status)
        return status

    assert ex.time_travel(lab, status_at).ok is True
    assert ex.time_travel(lab, lambda events, position: events[-1]["data"].get("status")).ok is False
    assert ex.time_travel(lab, None).ok is None

    assert ex.no_lost_updates(lab, increment).ok is True
    assert ex.no_lost_updates(lab, blind).ok is False  # the writers race every time


def test_read_your_writes(lab) -> None:
    def right(lab, name, email):
        r = lab.command("create-user", name=name, email=email)
        lab.wait_for_projection(r["position"], "users")
        return lab.query(f"users/{r['user_id']}")

    def no_wait(lab, name, email):
        r = lab.command("create-user", name=name, email=email)
        return lab.query(f"users/{r['user_id']}")

    assert ex.read_your_writes(lab, right).ok is True
    # a read that does not wait fails every time, however fast the processor is (it used to
    # pass whenever the projection won the race)
    for _ in range(3):
        wrong = ex.read_your_writes(lab, no_wait)
        assert wrong.ok is False and "lab.wait_for_projection(r['position'], 'users')" in \
            wrong.message
    assert ex.read_your_writes(lab, lambda lab, n, e: lab.query("users")).ok is False
    assert ex.read_your_writes(lab, None).ok is None
    assert ex.read_your_writes(lab, right).ok is True  # the processor runs on afterwards


@pytest.fixture(scope="module")
def pg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The whole lab on PostgreSQL (event store) and Redis (read model)."""
    from labkit.runtime.local import drop_server_data
    from tests.conftest import require_postgres, require_redis
    from tests.integration.labs import lab_settings

    settings = lab_settings(tmp_path_factory.mktemp("plugins-pg"), pg_url=require_postgres(),
                            redis_url=require_redis())
    lab = Lab(settings)
    try:
        lab.up(progress=False)
        yield lab
    finally:
        lab.reset()
        drop_server_data(settings)


def test_the_exercises_work_on_postgres_and_redis(pg_lab) -> None:
    lab = pg_lab
    lab.deploy_code(notify_plugin)
    assert ex.saga_step_added(lab).ok is True
    assert ex.compensation_plan(lab, ["retract_notice", "cancel_order"]).ok is True
    lab.remove_code("notify_plugin")
    lab.deploy_code(orders_per_user)
    lab.replay(["orders-per-user"])
    assert ex.orders_per_user_view(lab).ok is True
    lab.remove_code("orders_per_user")
    lab.deploy_code(loyalty_upcaster, restart=["event-store-api"])
    assert ex.upcaster_applied(lab).ok is True
    lab.remove_code("loyalty_upcaster", restart=["event-store-api"])
    assert ex.no_lost_updates(lab, increment).ok is True
