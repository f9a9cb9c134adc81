"""The services keep the contract they publish: schemathesis drives every HTTP service of a
real lab through its own OpenAPI document, with valid *and* invalid data, and runs every check
(no 5xx, status codes, content types, headers and bodies conform to the schema, invalid data is
refused). It replaces a fuzz test that only looked for 5xx.

    pytest tests/integration/test_contract.py -s    # prints the figures per service

`LABKIT_CONTRACT_EXAMPLES` (default 15) is the number of generated cases per operation and
data kind; the figures in the issue's report came from a larger run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import ALL_CHECKS

from ecommerce.services.registry import SERVICES
from labkit.runtime.local import LocalRuntime
from tests.integration.labs import lab_settings

HTTP = [name for name, spec in SERVICES.items() if spec.http]
EXAMPLES = int(os.environ.get("LABKIT_CONTRACT_EXAMPLES", "15"))
schemathesis.experimental.OPEN_API_3_1.enable()  # FastAPI publishes OpenAPI 3.1


@dataclass
class Figures:
    service: str
    operations: int = 0
    requests: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: Operations that take no input a schema could make invalid (no negative cases exist).
    no_negative: int = 0

    def line(self) -> str:
        return (f"{self.service}: {self.operations} operations, "
                f"{sum(self.requests.values())} requests ({dict(self.requests)}), "
                f"statuses {dict(sorted(self.statuses.items()))}, "
                f"{len(self.failures)} failures ({self.no_negative} operations take no input "
                "that could be invalid), checks: "
                + ", ".join(c.__name__ for c in ALL_CHECKS))


def exercise(base: str, service: str, examples: int = EXAMPLES) -> Figures:
    """Every operation, positive then negative data, every check; what happened."""
    schema = schemathesis.from_uri(f"{base}/openapi.json", base_url=base)
    out = Figures(service)
    operations = [result.ok() for result in schema.get_all_operations()]
    out.operations = len(operations)
    for operation in operations:
        for method in (DataGenerationMethod.positive, DataGenerationMethod.negative):
            if method is DataGenerationMethod.negative and not _takes_input(operation):
                out.no_negative += 1  # nothing a schema could make invalid (GET /healthz)
                continue
            try:
                _probe(operation, method, out, examples)
            except BaseException as exc:  # no invalid input can be generated for it
                if type(exc).__name__ not in ("SkipTest", "Skipped", "Unsatisfiable"):
                    raise
                out.no_negative += 1
    return out


def _takes_input(operation: object) -> bool:
    definition = operation.definition.raw  # type: ignore[attr-defined]
    return bool(definition.get("parameters") or definition.get("requestBody"))


def _probe(operation: object, method: DataGenerationMethod, out: Figures, examples: int) -> None:
    @given(case=operation.as_strategy(data_generation_method=method))  # type: ignore[attr-defined]
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def probe(case: schemathesis.Case) -> None:
        response = case.call(timeout=15)
        out.requests[method.value] += 1
        out.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=ALL_CHECKS)
        except AssertionError as exc:
            out.failures.append(f"{case.method} {case.formatted_path} ({method.value}) "
                                f"-> {response.status_code}: {str(exc)[:400]}")

    probe()
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(lab_settings(tmp_path_factory.mktemp("contract")), [*HTTP, "event-processor"])
    try:
        rt.up(progress=False, timeout=180)  # a safety net on a loaded machine, not a speed test
        yield rt
    finally:
        rt.down()


@pytest.mark.parametrize("service", HTTP)
def test_the_service_keeps_its_published_contract(lab: LocalRuntime, service: str) -> None:
    figures = exercise(lab.url(service), service)
    print(figures.line())
    assert figures.operations >= 2, f"{service} publishes too few operations"
    assert figures.requests["negative"] > 0 and figures.requests["positive"] > 0
    assert not figures.failures, "\n".join(figures.failures[:10])
