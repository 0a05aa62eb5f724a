"""schemathesis on the read API with real read credentials (the suite-wide run in
tests/dialects/test_openapi.py sends a server key, which every read route refuses):
every answer is documented, never a 5xx, for a read key and for an admin token."""

from __future__ import annotations

from typing import Any

import hypothesis
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from collector.openapi import served_document
from tests.api.support import bearer, token, track
from tests.harness import System

DOCUMENT = msgspec.json.decode(served_document())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
LABELS = [
    f"{method.upper()} {path}"
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
    if operation["operationId"].startswith("api.")
    and operation["operationId"] != "api.live.get"  # never ends: tests/api/test_live.py
    and "stats" not in path  # the stats endpoints have their own tests
]


@pytest.mark.parametrize("label", LABELS)
def test_read_api_answers_as_documented(system: System, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    track(system, "Fuzzed", properties={"plan": "pro"})
    system.work()
    credentials = [bearer(token(system, system.product.id)), bearer(token(system))]

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(), which=st.integers(0, 1))
    def check(case: Any, which: int) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=credentials[which])
        kwargs.pop("cookies", None)
        response = system.client.request(**kwargs)
        assert response.status_code < 500, (response.status_code, response.text)
        case.validate_response(
            response,
            excluded_checks=[
                schemathesis.checks.positive_data_acceptance,
                schemathesis.checks.ignored_auth,
            ],
        )

    check()
