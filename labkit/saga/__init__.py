"""The order saga's orchestrator and its notebook API.

- `Orchestrator(store, participants)`: drives sagas (`run(id)`, `run_pending()`, `follow(stop)`);
  see `labkit.saga.orchestrator` for why a crashed orchestrator resumes for free.
- `SagaClient(lab)`: `lab.saga.place_order / wait / status / list / timeline`.
- `python -m labkit.saga run --follow | --pending | --order-id ID`: the process entrypoint.
"""

from labkit.domain.saga import ORDER_SAGA, RetryPolicy, SagaRuleError
from labkit.saga.cli import format_view, main
from labkit.saga.client import SagaClient, SagaTimeout
from labkit.saga.orchestrator import (
    Orchestrator,
    find_saga,
    pending_saga_ids,
    start_saga,
)
from labkit.saga.participants import HttpParticipants, participant_urls

__all__ = [
    "ORDER_SAGA",
    "HttpParticipants",
    "Orchestrator",
    "RetryPolicy",
    "SagaClient",
    "SagaRuleError",
    "SagaTimeout",
    "find_saga",
    "format_view",
    "main",
    "participant_urls",
    "pending_saga_ids",
    "start_saga",
]
