"""The order saga's orchestrator: what the `saga-orchestrator` Job and Deployment run.

- `Orchestrator(store, participants)`: drives sagas (`run(id)`, `run_pending()`, `follow(stop)`);
  see `ecommerce.saga.orchestrator` for why a crashed orchestrator resumes for free.
- `HttpParticipants`: the participants' HTTP endpoints, one call per saga step.
- `python -m ecommerce.saga run --follow | --pending | --order-id ID`: the process entrypoint.

The notebooks' side (`lab.saga.place_order / wait / status / list / timeline`) lives in
`labkit.lab.saga_client`.
"""

from ecommerce.domain.saga import ORDER_SAGA, RetryPolicy, SagaRuleError
from ecommerce.domain.saga_view import format_view
from ecommerce.saga.orchestrator import (
    Orchestrator,
    find_saga,
    pending_saga_ids,
    start_saga,
)
from ecommerce.saga.participants import HttpParticipants, participant_urls

__all__ = [
    "ORDER_SAGA",
    "HttpParticipants",
    "Orchestrator",
    "RetryPolicy",
    "SagaRuleError",
    "find_saga",
    "format_view",
    "participant_urls",
    "pending_saga_ids",
    "start_saga",
]
