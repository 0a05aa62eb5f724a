"""Data Analytics Service contract: the page's request bodies, end to end, on both databases."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sightline.model import EventType
from tests.harness import System

COMMON: dict[str, Any] = {
    "user_id": "current user ID",
    "tool_signature": "tool signature",
    "recording_id": "gpdb recording ID",
    "event_type": "view",
    "event_id": "event ID",
    "message": "message",
    "javascript_local_time": "local_time",
    "apex_local_time": "local_time",
    "event_environment_path": "path",
    "name_parser_event_id": "event_id",
    "recommendation_model_event_id": "event_id",
    "version_info": {"key": "value"},
}
# The page's three request bodies and its browser-extension body, verbatim.
ANALYTICS_EVENT = {
    "customer_id": "customer_id",
    "entity_id": "ID",
    "entity_type": "lead or contact",
}
ANALYTICS_EVENT |= COMMON
LEAD_EVENT = {"customer_id": "customer_id", "lead_id": "ID"} | COMMON
CONTACT_EVENT = {"customer_id": "customer_id", "contact_id": "ID"} | COMMON
EXTENSION_EVENT = {
    "customer_id": "ID",
    "entity_id": "ID",
    "user_id": "ID",
    "tool_signature": "browser_extension",
    "recording_id": "gpdb recording ID",
    "event_type": "view",
    "event_id": "event ID",
    "message": "message",
    "javascript_local_time": "local_time",
    "apex_local_time": "local_time",
    "event_environment_path": "path",
    "name_parser_event_id": "event_id",
    "recommendation_model_event_id": "event_id",
    "version_info": {"key": "value"},
}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def key(system: System) -> dict[str, str]:
    return {"Authorization": f"Bearer {system.server_key}"}


def test_lead_event_answers_the_pages_response_body(system: System) -> None:
    r = system.client.post("/api/v1/lead_analytics", json=LEAD_EVENT, headers=key(system))
    assert r.status_code == 201, r.text
    body = r.json()
    assert list(body) == [
        "customer_id", "lead_id", "user_id", "tool_signature", "recording_id", "event_type",
        "event_id", "message", "entityType", "partitionKey", "sortKey", "created_at", "updated_at",
    ]  # fmt: skip
    assert body["entityType"] == "lead_analytics_event"
    assert re.fullmatch(f"Lead analytics event\\|{UUID}", body["partitionKey"])
    assert body["sortKey"] == "customer_id"
    assert TIME.match(body["created_at"]) and body["created_at"] == body["updated_at"]
    assert {k: body[k] for k in ("customer_id", "lead_id", "user_id", "event_type")} == {
        "customer_id": "customer_id",
        "lead_id": "ID",
        "user_id": "current user ID",
        "event_type": "view",
    }


def test_contact_event_answers_the_pages_response_body(system: System) -> None:
    r = system.client.post("/api/v1/contact_analytics", json=CONTACT_EVENT, headers=key(system))
    assert r.status_code == 201, r.text
    body = r.json()
    assert list(body) == [
        "customer_id", "contact_id", "user_id", "tool_signature", "recording_id", "event_type",
        "event_id", "entityType", "partitionKey", "sortKey", "message", "created_at", "updated_at",
    ]  # fmt: skip
    assert body["entityType"] == "contact_analytics_event"
    assert re.fullmatch(f"Contact analytics event\\|{UUID}", body["partitionKey"])


def test_page_bodies_are_stored_as_canonical_events(system: System) -> None:
    for path, body in (
        ("/api/v1/analytics_events", ANALYTICS_EVENT),
        ("/api/v1/lead_analytics", LEAD_EVENT),
        ("/api/v1/contact_analytics", CONTACT_EVENT),
        ("/api/v1/lead_analytics", EXTENSION_EVENT),
    ):
        r = system.client.post(path, json=body, headers=key(system))
        assert r.status_code == 201, (path, r.text)
    system.work()
    stored = sorted(system.events(), key=lambda e: e.received_at)
    assert [(e.entity_type, e.entity_id, e.type) for e in stored] == [
        ("lead or contact", "ID", EventType.TRACK),
        ("lead", "ID", EventType.TRACK),
        ("contact", "ID", EventType.TRACK),
        ("lead", "ID", EventType.EXTENSION),
    ]
    lead = stored[1]
    assert (lead.name, lead.user_id, lead.account_id) == ("view", "current user ID", "customer_id")
    assert lead.recording_id == "gpdb recording ID"
    assert lead.properties["version_info"] == {"key": "value"}
    assert lead.properties["javascript_local_time"] == "local_time"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param(
            "/api/v1/lead_analytics", {**LEAD_EVENT, "customer_id": None}, "customer_id", id="null"
        ),
        pytest.param(
            "/api/v1/lead_analytics",
            {k: v for k, v in LEAD_EVENT.items() if k != "user_id"},
            "user_id",
            id="missing",
        ),
        pytest.param(
            "/api/v1/lead_analytics",
            {k: v for k, v in LEAD_EVENT.items() if k != "lead_id"},
            "lead_id",
            id="no-lead",
        ),
        pytest.param(
            "/api/v1/contact_analytics",
            {**CONTACT_EVENT, "version_info": "x"},
            "version_info",
            id="type",
        ),
        pytest.param(
            "/api/v1/analytics_events",
            {**ANALYTICS_EVENT, "event_type": ""},
            "event_type",
            id="empty",
        ),
    ],
)
def test_invalid_input_is_422_with_a_list_of_field_errors(
    system: System, path: str, body: dict[str, Any], field: str
) -> None:
    r = system.client.post(path, json=body, headers=key(system))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list)
    assert [field] in [d["loc"] for d in detail]


def test_empty_body_is_422_too(system: System) -> None:
    r = system.client.post("/api/v1/lead_analytics", content=b"", headers=key(system))
    assert r.status_code == 422
    assert "detail" in r.json()


def test_unknown_key_is_401(system: System) -> None:
    r = system.client.post(
        "/api/v1/lead_analytics", json=LEAD_EVENT, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert "detail" in r.json()


def search(system: System, entity: str, **params: Any) -> Any:
    return system.client.get(
        f"/api/v1/{entity}_analytics/search", params=params, headers=key(system)
    )


def test_search_reads_back_from_the_store(system: System) -> None:
    for recording, event_type in (("rec-1", "view"), ("rec-1", "edit"), ("rec-2", "view")):
        body = LEAD_EVENT | {
            "recording_id": recording,
            "event_type": event_type,
            "javascript_local_time": f"2024-05-0{1 + len(event_type)}T10:00:00+02:00",
        }
        system.client.post("/api/v1/lead_analytics", json=body, headers=key(system))
    other = CONTACT_EVENT | {"recording_id": "rec-1"}
    system.client.post("/api/v1/contact_analytics", json=other, headers=key(system))
    system.work()
    wanted = {"customer_id": "customer_id", "user_id": "current user ID", "lead_id": "ID"}
    r = search(system, "lead", recording_id=["rec-1", "rec-2"], **wanted)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["meta"] == {"page": 1, "pageSize": 10, "rowCount": 3}
    first = result["recordings"][0]
    assert list(first) == [
        "customer_id", "entity_type", "entity_id", "user_id", "tool_signature", "recording_id",
        "event_type", "event_id", "message", "created_at", "updated_at",
    ]  # fmt: skip
    assert first["entity_type"] == "lead" and first["entity_id"] == "ID"
    latest = search(system, "lead", recording_id=["rec-1", "rec-2"], latest="true", **wanted)
    assert latest.json()["meta"]["rowCount"] == 2
    newest = {r["recording_id"]: r["event_type"] for r in latest.json()["recordings"]}
    assert newest == {"rec-1": "edit", "rec-2": "view"}
    paged = search(system, "lead", recording_id="rec-1", page="2", pageSize="1", **wanted)
    assert paged.json()["meta"] == {"page": 2, "pageSize": 1, "rowCount": 2}
    assert len(paged.json()["recordings"]) == 1
    contact = search(
        system, "contact", recording_id="rec-1", customer_id="customer_id",
        user_id="current user ID", contact_id="ID",
    )  # fmt: skip
    assert contact.json()["meta"]["rowCount"] == 1


@pytest.mark.parametrize("missing", ["recording_id", "customer_id", "user_id", "lead_id"])
def test_search_without_a_required_parameter_is_422(system: System, missing: str) -> None:
    params: dict[str, Any] = {
        "recording_id": "r",
        "customer_id": "c",
        "user_id": "u",
        "lead_id": "l",
    }
    del params[missing]
    r = search(system, "lead", **params)
    assert r.status_code == 422
    assert [missing] in [d["loc"] for d in r.json()["detail"]]


# -- the key as a path prefix: an integration changes only its base URL ----------------

PAGE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
"""The only headers the page's requests carry."""


def test_the_key_may_be_a_path_prefix_on_every_route(system: System) -> None:
    base = f"/k/{system.write_key}"
    for path, body in (
        ("/api/v1/analytics_events", ANALYTICS_EVENT),
        ("/api/v1/lead_analytics", LEAD_EVENT | {"recording_id": "rec-k"}),
        ("/api/v1/contact_analytics", CONTACT_EVENT),
        ("/api/v1/lead_analytics", EXTENSION_EVENT),
    ):
        r = system.client.post(base + path, content=json.dumps(body), headers=PAGE_HEADERS)
        assert r.status_code == 201, (path, r.text)
    system.work()
    assert len(system.events()) == 4
    query: dict[str, Any] = {
        "recording_id": "rec-k", "customer_id": "customer_id", "user_id": "current user ID",
    }  # fmt: skip
    server = f"/k/{system.server_key}"
    found = system.client.get(
        f"{server}/api/v1/lead_analytics/search", params=query | {"lead_id": "ID"}
    )
    assert found.status_code == 200, found.text
    assert found.json()["meta"]["rowCount"] == 1
    contact = system.client.get(
        f"{server}/api/v1/contact_analytics/search",
        params=query | {"contact_id": "ID", "recording_id": "gpdb recording ID"},
    )
    assert contact.json()["meta"]["rowCount"] == 1
    # searching needs the server key, in the path as in a header; the DAS error shape
    refused = system.client.get(f"{base}/api/v1/lead_analytics/search", params=query)
    assert refused.status_code == 403 and "detail" in refused.json()
    unknown = system.client.post("/k/nope/api/v1/lead_analytics", json=LEAD_EVENT)
    assert unknown.status_code == 401 and "detail" in unknown.json()
    # without any key, as the page sends it, still 401: keys stay mandatory
    bare = system.client.post("/api/v1/lead_analytics", json=LEAD_EVENT, headers=PAGE_HEADERS)
    assert bare.status_code == 401


def test_the_prefixed_routes_are_in_the_openapi_document(system: System) -> None:
    paths = system.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/analytics_events",
        "/api/v1/lead_analytics",
        "/api/v1/lead_analytics/search",
        "/api/v1/contact_analytics",
        "/api/v1/contact_analytics/search",
    ):
        assert path in paths and "/k/{key}" + path in paths


# -- every failing field ---------------------------------------------------------------


def test_every_failing_field_of_the_body_is_listed(system: System) -> None:
    bad = LEAD_EVENT | {"customer_id": 7, "user_id": "", "version_info": "v2"}
    del bad["lead_id"]
    r = system.client.post("/api/v1/lead_analytics", json=bad, headers=key(system))
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [
        ["customer_id"],
        ["user_id"],
        ["version_info"],
        ["lead_id"],
    ]
    missing = {"event_type": ["view"]}
    r = system.client.post("/api/v1/analytics_events", json=missing, headers=key(system))
    assert [d["loc"] for d in r.json()["detail"]] == [
        ["customer_id"],
        ["user_id"],
        ["event_type"],
    ]


# -- search across dialects -----------------------------------------------------------


def test_search_finds_what_other_dialects_wrote_about_the_lead(system: System) -> None:
    """``lead_id`` / ``contact_id`` / ``recording_id`` properties set the entity and recording."""
    system.client.post("/api/v1/lead_analytics", json=LEAD_EVENT, headers=key(system))
    native = {
        "userId": "current user ID",
        "event": "Lead opened",
        "properties": {"lead_id": "ID", "recording_id": "gpdb recording ID"},
        "context": {"groupId": "customer_id"},
    }
    assert system.send("/v1/track", native).status_code == 200
    fuzy = {
        "eventType": "Lead called",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "user": {"userId": "current user ID", "accountId": "customer_id"},
        "metadata": {"lead_id": "ID", "recording_id": "gpdb recording ID"},
    }
    assert (
        system.client.put(
            "/v3/event", json=fuzy, headers={"x-api-key": system.write_key}
        ).status_code
        == 202
    )
    contact = native | {"event": "Contact opened", "properties": {"contact_id": "ID"}}
    assert system.send("/v1/track", contact).status_code == 200
    system.work()
    r = search(
        system,
        "lead",
        recording_id="gpdb recording ID",
        customer_id="customer_id",
        user_id="current user ID",
        lead_id="ID",
    )
    names = {rec["event_type"] for rec in r.json()["recordings"]}
    assert names == {"view", "Lead opened", "Lead called"}
    stored = {e.name: e for e in system.events()}
    assert (stored["Contact opened"].entity_type, stored["Contact opened"].entity_id) == (
        "contact",
        "ID",
    )
    assert stored["Contact opened"].recording_id is None
