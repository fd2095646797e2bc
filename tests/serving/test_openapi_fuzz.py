"""Schemathesis against the service's OpenAPI schema: no generated request gets a 5xx.

Driven through Hypothesis directly (schemathesis 4.32's pytest plugin does not run under
pytest 9): every operation, valid (positive) and invalid (negative) inputs, 25 examples each.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.serving.conftest import API_ENDPOINTS

MAX_EXAMPLES = 25
WITHOUT_INPUTS = {"/model_info", "/healthz", "/livez", "/readyz", "/metrics"}


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_asgi("/docs.json", service.to_asgi())


def test_schema_lists_every_endpoint(api_schema) -> None:
    paths = {result.ok().path for result in api_schema.get_all_operations()}
    assert paths >= API_ENDPOINTS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(api_schema, mode: GenerationMode) -> None:
    server_errors = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case) -> None:
            response = case.call()
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.path} {case.body!r} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        try:
            call()
        except Unsatisfiable:
            # Operations without inputs have no invalid variant to generate.
            assert mode is GenerationMode.NEGATIVE and operation.path in WITHOUT_INPUTS
    assert not server_errors, "\n".join(server_errors[:10])
