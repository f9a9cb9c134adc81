"""An order's fate: confirmed, or withdrawn by a compensation. Decided once, whoever asks first.

The saga's pivot (order-service confirms the order) and its compensations (payment-service
refunds, inventory-service releases) are written by three services to three different streams,
so no expected version can order them. A refund that slips in while the order is being
confirmed would leave a CONFIRMED order whose money went back: the customer keeps the goods and
the money. What orders them is the event store's rule that an event id is stored once, in one
stream (`DuplicateEventError` otherwise):

- `OrderConfirmed` is appended with the id `fate_id(order_id)`;
- the first refund or release of an order appends `OrderWithdrawn` with that *same* id, in the
  same append as its own effect (refund and stream ids of the service's own streams).

Exactly one of them can ever be stored. After a confirm, every refund and release is refused
(409 `order_confirmed`); after a withdrawal the confirm is refused (409 `order_withdrawn`), and
the saga compensates the rest. This holds whoever calls: the orchestrator, a student with curl,
or an attacker through the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ecommerce.domain.events import NewEvent, RecordedEvent
from ecommerce.domain.idempotency import event_id

ORDER_CONFIRMED: Final = "OrderConfirmed"
ORDER_WITHDRAWN: Final = "OrderWithdrawn"
#: The events a participant folds to know an order's fate (any stream).
FATE_EVENTS: Final = (ORDER_CONFIRMED, ORDER_WITHDRAWN)


def fate_id(order_id: str) -> str:
    """The one id an order's confirmation or withdrawal is stored under."""
    return event_id("order", order_id, "fate")


def withdrawn(order_id: str, by: str) -> NewEvent:
    """The claim a compensation appends with its effect: this order will never be confirmed."""
    return NewEvent(ORDER_WITHDRAWN, {"order_id": order_id, "by": by}, id=fate_id(order_id))


@dataclass
class Fates:
    """Which orders are confirmed and which withdrawn, folded from the log."""

    confirmed: set[str] = field(default_factory=set)
    withdrawn: set[str] = field(default_factory=set)

    def apply(self, event: RecordedEvent) -> None:
        if event.type == ORDER_CONFIRMED:
            self.confirmed.add(event.data["order_id"])
        elif event.type == ORDER_WITHDRAWN:
            self.withdrawn.add(event.data["order_id"])


class OrderFateError(ValueError):
    """A compensation refused because the order is confirmed (or a confirm because withdrawn)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_withdrawable(fates: Fates, order_id: str, what: str) -> NewEvent | None:
    """The claim to append with a refund or release (None: withdrawn already); raises
    `OrderFateError("order_confirmed")` once the order is confirmed."""
    if order_id in fates.confirmed:
        raise OrderFateError("order_confirmed",
                             f"order {order_id} is CONFIRMED: its {what} cannot be undone "
                             "(the customer has the goods and the merchant the money)")
    if order_id in fates.withdrawn:
        return None
    return withdrawn(order_id, what)
