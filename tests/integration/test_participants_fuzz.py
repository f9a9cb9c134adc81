"""No input may produce a 5xx: schemathesis drives each saga participant through its own
OpenAPI schema, over real HTTP, against the real process (SQLite). Bounded: well under a minute.

/faults is left out on purpose: a valid random body may arm `crash` or `error`, which answer
5xx by design. Its validation is covered by test_participants.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.integration.service_proc import ServiceProc, Services, fund

PARTICIPANTS = ["user-service", "order-service", "inventory-service", "payment-service"]
#: Per operation. Raise it for a deeper local run: LABKIT_FUZZ_EXAMPLES=300 pytest ...
MAX_EXAMPLES = int(os.environ.get("LABKIT_FUZZ_EXAMPLES", "25"))
schemathesis.experimental.OPEN_API_3_1.enable()  # FastAPI publishes OpenAPI 3.1


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProc]]:
    lab = Services(tmp_path_factory.mktemp("participants-fuzz"))
    try:
        commands = lab.start("command-service")
        started = {name: lab.spawn(name, faults=False,
                                   env={"LABKIT_COMMAND_SERVICE_URL": commands.url})
                   for name in PARTICIPANTS}
        for svc in started.values():
            svc.wait_ready()
        # Something to find: an account with money, so charges get past "unknown account".
        fund(started["payment-service"], "alice", 10**9)
        yield started
    finally:
        lab.close()


@pytest.mark.parametrize("service", PARTICIPANTS)
def test_no_input_produces_a_server_error(running: dict[str, ServiceProc], service: str) -> None:
    svc = running[service]
    schema = schemathesis.from_uri(f"{svc.url}/openapi.json", base_url=svc.url)
    failures: list[str] = []
    operations = [op.ok() for op in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.startswith("/faults")]
    assert len(operations) >= 3, f"{service} publishes too few operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def probe(case: schemathesis.Case) -> None:
            response = case.call(timeout=10)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                                f"{response.status_code}: {response.text[:300]}")

        probe()
    assert svc.alive, f"{service} died during the fuzz run:\n{svc.log()}"
    assert not failures, "\n".join(failures[:10])
