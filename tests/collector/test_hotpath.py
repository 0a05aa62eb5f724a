"""The ingest POSTs served in front of Starlette's stack (``collector.hotpath``)."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.types import Message

import collector.intake
from collector.hotpath import HotRequest
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


def test_a_hot_request_reads_headers_state_and_client_as_starlette_does() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/track",
        "headers": (
            (b"x-one", b"first"),
            (b"x-one", b"second"),
            (b"user-agent", b"caf\xe9"),
        ),
        "client": ("10.0.0.1", 1234),
        "state": {"directory": "the directory"},
    }
    hot, plain = HotRequest(dict(scope), receive), Request(dict(scope), receive)
    for name in ("x-one", "X-One", "user-agent", "origin"):
        assert hot.headers.get(name) == plain.headers.get(name)
        assert (name in hot.headers) == (name in plain.headers)
    assert hot.headers["X-ONE"] == "first" and hot.headers.getlist("x-one") == ["first", "second"]
    with pytest.raises(KeyError):
        hot.headers["origin"]
    assert hot.client == plain.client == ("10.0.0.1", 1234)
    assert hot.state.directory == "the directory"
    hot.state.added = 1  # written to the request's state dict, as Starlette's State does
    assert hot.scope["state"]["added"] == 1 and hot.state.added == 1
    del hot.state.added
    with pytest.raises(AttributeError):
        hot.state.added  # noqa: B018
