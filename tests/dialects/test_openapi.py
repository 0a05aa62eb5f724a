"""The OpenAPI document: complete, valid, and true of the running collector.

A schemathesis run generates requests for every documented operation from the
document itself and sends them through the real app (real Redis, real
database); every answer must be a documented status with a body matching its
schema, never a 5xx. Whatever was accepted must then normalise: the worker
leaves no dead letters (except for the pixels, which by design enqueue what
they cannot use so that the worker records why, and the batch endpoints, which
dead-letter a batch's invalid messages while storing its valid ones).
"""

from __future__ import annotations

from typing import Any

import hypothesis
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.routing import Route

from collector.app import create_app
from collector.openapi import served_document
from tests.harness import System

DOCUMENT = msgspec.json.decode(served_document())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
DEAD_LETTERING = (
    "GET /p.gif",
    "GET /pixel/v1/",
    "POST /v1/batch",
    "POST /v1/b",
    "POST /v1/import",
    "POST /beacon/v1/batch",
)
OPERATION_LABELS = [result.ok().label for result in SCHEMA.get_all_operations()]


def test_every_route_is_documented() -> None:
    documented = {
        (path, method.upper()) for path, methods in DOCUMENT["paths"].items() for method in methods
    }
    served = {
        (route.path, method)
        for route in create_app().routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == documented


def test_document_is_openapi_3_1(system: System) -> None:
    r = system.client.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    assert document["openapi"] == "3.1.0"
    assert "/v3/event" in document["paths"] and "/integrations/event" in document["paths"]
    page = system.client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN


@pytest.mark.parametrize("label", OPERATION_LABELS)
def test_generated_requests_get_documented_answers(system: System, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    auth = {
        "Authorization": f"Bearer {system.server_key}",
        "X-API-Key": system.server_key,
        "APIKey": system.server_key,
    }

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(), with_key=st.booleans())
    def check(case: Any, with_key: bool) -> None:
        kwargs = case.as_transport_kwargs(
            base_url="http://testserver", headers=auth if with_key else {}
        )
        kwargs.pop("cookies", None)
        response = system.client.request(**kwargs)
        assert response.status_code < 500, (response.status_code, response.text)
        # Excluded: positive_data_acceptance (the document cannot say every rule, e.g.
        # "a user or an account", so schema-valid data may be a 400) and ignored_auth
        # (it drops one key header while the request carries the key several ways;
        # the contract tests check 401 / 403 per dialect).
        case.validate_response(
            response,
            excluded_checks=[
                schemathesis.checks.positive_data_acceptance,
                schemathesis.checks.ignored_auth,
            ],
        )

    check()
    system.work()
    # By design, the pixels dead-letter what they cannot use, and a batch endpoint the
    # invalid messages of a batch whose valid ones it stored.
    if not label.startswith(DEAD_LETTERING):
        assert system.dead_letters() == []
