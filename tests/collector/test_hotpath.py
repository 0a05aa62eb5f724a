"""The ingest POSTs served in front of Starlette's stack (``collector.hotpath``)."""

from __future__ import annotations

import pytest

import collector.intake
from tests.harness import System, basic


def test_an_unexpected_error_on_a_hot_path_is_a_counted_500(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(collector.intake, "uuid7", broken)
    response = system.client.post(
        "/v1/track",
        json={"userId": "u", "event": "E"},
        headers=basic(system.product.write_keys[0]),
    )
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert 'sightline_requests_total{dialect="native",status="500"} 1.0' in system.metrics()
    assert system.queued_jobs() == 0


def test_the_hot_paths_and_the_rest_of_the_app_answer_alike(system: System) -> None:
    key = system.product.write_keys[0]
    ok = system.client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(key))
    assert ok.status_code == 200, ok.text
    # A path with a parameter and a GET go through Starlette's router.
    assert system.client.get("/health").status_code == 200
    assert system.client.post("/v1/nope", json={}, headers=basic(key)).status_code == 404
    assert system.client.get("/v1/track").status_code == 405
