"""No input may produce a 5xx: schemathesis drives each CQRS / event-store service through its
own OpenAPI schema, over real HTTP, against the real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from labkit.runtime.local import LocalRuntime
from tests.integration.labs import lab_settings, running

SERVICES = ["command-service", "query-service", "event-store-api"]
schemathesis.experimental.OPEN_API_3_1.enable()  # FastAPI publishes OpenAPI 3.1


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[LocalRuntime]:
    with running(lab_settings(tmp_path_factory.mktemp("fuzz")), [*SERVICES, "event-processor"]) as rt:
        yield rt


@pytest.mark.parametrize("service", SERVICES)
def test_no_input_produces_a_server_error(lab: LocalRuntime, service: str) -> None:
    base = lab.url(service)
    schema = schemathesis.from_uri(f"{base}/openapi.json", base_url=base)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{service} publishes no operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def probe(case) -> None:
            response = case.call(timeout=10)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:300]}")

        probe()
    assert not failures, "\n".join(failures[:10])
