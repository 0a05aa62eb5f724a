"""Bad input gets a precise 4xx naming the field and the reason, and nothing is enqueued."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sightline.store.products import ProductSettings, update_product
from tests.harness import System, basic


def assert_nothing_enqueued(system: System) -> None:
    assert system.queued_jobs() == 0
    assert system.status().accepted == 0


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        pytest.param(b'{"userId": "u", "event": ', "$", "truncated", id="malformed-json"),
        pytest.param(b'{"userId": 1.5, "event": "E"}', "userId", "Expected", id="wrong-type"),
        pytest.param(
            b'{"userId": "u"}', "event", "missing required field event", id="missing-event"
        ),
        pytest.param(b'{"event": "E"}', "userId", "userId or anonymousId", id="no-identity"),
        pytest.param(b'{"userId": "u", "event": ""}', "event", "length", id="empty-name"),
        pytest.param(
            b'{"userId": "u", "event": "E", "timestamp": "yesterday"}',
            "timestamp",
            "datetime",
            id="bad-time",
        ),
        pytest.param(
            b'{"userId": "u", "event": "E", "properties": []}',
            "properties",
            "Expected",
            id="props-not-object",
        ),
        pytest.param(b'{"userId": "\xff\xfe", "event": "E"}', "$", "", id="non-utf8"),
        pytest.param(b"[]", "$", "Expected", id="not-an-object"),
        pytest.param(b"   ", "", "empty", id="empty-body"),
        pytest.param(
            json.dumps({"userId": "u", "event": "x" * 300}).encode(),
            "event",
            "length",
            id="name-too-long",
        ),
    ],
)
def test_invalid_track_is_a_400_naming_the_field(
    system: System, body: bytes, field: str, reason: str
) -> None:
    response = system.client.post("/v1/track", content=body, headers=basic(system.write_key))
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False
    if field:
        assert payload["errors"][0]["field"] == field
        assert reason.lower() in payload["errors"][0]["reason"].lower()
    else:
        assert reason in payload["error"]
    assert_nothing_enqueued(system)


def test_a_batch_keeps_its_valid_messages_and_names_each_refused_one(system: System) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "ok"},
        {"type": "track", "userId": "u"},
        {"type": "nonsense", "userId": "u"},
    ]
    response = system.send("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["success"], answer["accepted"]) == (True, 1)
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (1, "batch[1].event"),
        (2, "batch[2].type"),
    ]
    system.work()
    assert [e.name for e in system.events()] == ["ok"]
    letters = system.dead_letters()
    assert len(letters) == 2  # nothing a 2xx accepted is lost: the refused ones are kept
    assert all(letter.reason == "schema" for letter in letters)
    details = " ".join(letter.detail for letter in letters)
    assert "batch[1].event" in details and "batch[2].type" in details


def test_a_batch_of_which_no_message_is_valid_is_refused_whole_naming_each(
    system: System,
) -> None:
    batch = [{"type": "track", "userId": "u"}, {"type": "nonsense", "userId": "u"}]
    response = system.send("/v1/batch", {"batch": batch})
    assert response.status_code == 400
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["batch[0].event", "batch[1].type"]
    assert_nothing_enqueued(system)


def test_an_empty_batch_is_refused(system: System) -> None:
    response = system.send("/v1/batch", {"batch": []})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "batch", "reason": "must hold at least one message"}
    ]


def test_a_message_over_32_kb_is_a_413(system: System) -> None:
    body = {"userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}}
    response = system.send("/v1/track", body)
    assert response.status_code == 413
    assert_nothing_enqueued(system)


def test_a_message_over_32_kb_inside_a_batch_is_refused_alone(system: System) -> None:
    big = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}}
    response = system.send(
        "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}, big]}
    )
    assert response.status_code == 200
    assert response.json()["rejected"][0]["field"] == "batch[1]"
    response = system.send("/v1/batch", {"batch": [big]})
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "batch[0]"


def test_a_batch_over_500_kb_is_a_413(system: System) -> None:
    message = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 20_000}}
    response = system.send("/v1/batch", {"batch": [message] * 30})
    assert response.status_code == 413
    assert_nothing_enqueued(system)


def test_a_lying_content_length_is_refused_before_reading(system: System) -> None:
    response = system.client.post(
        "/v1/batch",
        content=b"{}",
        headers=basic(system.write_key) | {"Content-Length": "999999999"},
    )
    assert response.status_code in (400, 413)


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        pytest.param({}, 401, "no key", id="no-key"),
        pytest.param({"X-Write-Key": "wk_nope"}, 401, "unknown key", id="unknown-key"),
        pytest.param({"Authorization": "Basic !!!"}, 401, "no key", id="garbled-basic"),
    ],
)
def test_keys(system: System, headers: dict[str, str], status: int, error: str) -> None:
    response = system.client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=headers)
    assert response.status_code == status
    assert error in response.json()["error"]
    assert_nothing_enqueued(system)


def test_origin_not_allowed_is_a_403(system: System) -> None:
    product = system.create_product("Shop", origins=("https://shop.example",))
    key = product.write_keys[0]
    ok = system.send(
        "/v1/track",
        {"userId": "u", "event": "E"},
        key=key,
        headers={"Origin": "https://shop.example"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    refused = system.send(
        "/v1/track",
        {"userId": "u", "event": "E"},
        key=key,
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert "origin" in refused.json()["error"]
    # the default product allows any origin: the refusal is readable by the page
    assert refused.headers["access-control-allow-origin"] == "https://evil.example"
    assert refused.headers["access-control-allow-credentials"] == "true"


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_an_origin_no_product_allows_gets_no_cors_headers_at_all(system: System) -> None:
    with system.engine.begin() as conn:
        update_product(
            conn, system.product.id, ProductSettings(allowed_origins=("https://shop.example",))
        )
    key = system.create_product("Shop", origins=("https://shop.example",)).write_keys[0]
    event = {"userId": "u", "event": "E"}
    # a new key reloads the product table, the default product's new origins with it
    allowed = system.send("/v1/track", event, key=key, headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert cors_headers(allowed) == {
        "access-control-allow-origin": "https://shop.example",
        "access-control-allow-credentials": "true",
    }
    invalid = system.send("/v1/track", {"userId": "u"}, headers={"Origin": "https://shop.example"})
    assert invalid.status_code == 400  # an allowed origin still reads why it was refused
    assert invalid.headers["access-control-allow-origin"] == "https://shop.example"

    evil = {"Origin": "https://evil.example"}
    refused = system.send("/v1/track", event, key=key, headers=evil)
    assert refused.status_code == 403
    assert refused.json()["error"] == "origin https://evil.example is not allowed for this product"
    unknown = system.send("/v1/track", event, key="wk_unknown", headers=evil)
    assert unknown.status_code == 401
    invalid = system.send("/v1/track", {"userId": "u"}, key=key, headers=evil)
    assert invalid.status_code == 400
    preflight = system.client.options(
        "/v1/batch", headers={**evil, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403
    for response in (refused, unknown, invalid, preflight):
        assert cors_headers(response) == {}, response.headers
    assert system.status().accepted == 1  # the allowed origin's event only
    # an endpoint that grants itself keeps its grant: the snippet is a public asset
    assert system.client.get("/s.js", headers=evil).headers["access-control-allow-origin"] == "*"


def test_wrong_method_and_unknown_path_are_json_errors(system: System) -> None:
    assert system.client.get("/v1/track").status_code == 405
    response = system.client.post("/v1/nothing-here", json={})
    assert response.status_code == 404
    assert response.json()["success"] is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "page", "identify", "group", "alias", "screen", "x"])
        | json_values,
        "userId": st.text(max_size=5) | json_values,
        "anonymousId": st.text(max_size=5),
        "event": st.text(max_size=5) | json_values,
        "groupId": json_values,
        "previousId": json_values,
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "nope", "2026-13-01"]) | json_values,
        "properties": json_values,
        "traits": json_values,
        "context": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        ["/v1/track", "/v1/page", "/v1/identify", "/v1/group", "/v1/alias", "/v1/batch"]
    ),
    body=message_like
    | st.builds(lambda b: {"batch": b}, st.lists(message_like, max_size=3))
    | json_values,
    raw=st.none() | st.binary(max_size=64),
)
def test_no_input_gets_a_5xx(system: System, path: str, body: Any, raw: bytes | None) -> None:
    content = raw if raw is not None else json.dumps(body).encode()
    response = system.client.post(path, content=content, headers=basic(system.write_key))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["success"] is False
