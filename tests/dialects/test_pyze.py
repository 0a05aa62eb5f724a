"""Pyze contract: the page's curl example and profile call, end to end, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from sightline.store.schema import events
from tests.harness import System

# The page's curl example, verbatim except for the app key (ours).
CURL_EXAMPLE: dict[str, Any] = {
    "type": "event",
    "event": "test-event",
    "userId": "Username",
    "eventTime": "2020-06-03T17:03:48-07:00",
    "attributes": {"key": "value"},
    "appKey": "yz1Jn-0pSnekg58etEQO4A",
}

# The page's profile example in its intended shape (ARCHITECTURE.md).
PROFILE_EXAMPLE: dict[str, Any] = {
    "user_profiles": [
        {
            "customer_id": "user123",
            "user_alias": {"alias_label": "facebook", "alias_id": "fb123409"},
            "first_name": "John",
            "last_name": "Doe",
            "date_of_first_use": "2016-04-12T17:27:20+00:00",
            "date_of_birth": "1994-07-06",
            "gender": "F",
            "custom-ltv": 35,
            "custom-purchase": {"inc": 30},
            "custom-subscription": "premium",
            "custom-tags": ["whale", "high-spender"],
        },
        {
            "pyze_id": "ca1ab028-185d-4833-a3af-5b5d46b62771",
            "date_of_last_use": "2018-06-20T08:17:00+00:00",
            "email_id": "jane.doe@gmail.com",
            "custom-tags": {"remove": ["whale"]},
        },
    ]
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def event(system: System, **changes: Any) -> dict[str, Any]:
    return CURL_EXAMPLE | {"appKey": system.write_key} | changes


def test_curl_example_is_accepted_and_stored(system: System) -> None:
    r = system.client.post("/v1/events", json=event(system))
    assert r.status_code == 202, r.text
    assert r.json() == {"message": "Event has been accepted for processing"}
    system.work()
    (stored,) = system.events()
    assert (stored.name, stored.user_id, stored.dialect) == ("test-event", "Username", "pyze")
    assert stored.properties == {"key": "value"}
    assert stored.timestamp.isoformat() == "2020-06-04T00:03:48+00:00"


def test_server_sent_event_records_the_devices_agent_and_ip(system: System) -> None:
    body = event(
        system,
        context={"userAgent": "Pyze-iOS/5.0", "ip": "203.0.113.9"},
        messageId="m-1",
        sentAt="2020-06-03T17:03:50-07:00",
    )
    headers = {"User-Agent": "backend/1.0"}
    assert system.client.post("/v1/events", json=body, headers=headers).status_code == 202
    assert system.client.post("/v1/events", json=body, headers=headers).status_code == 202
    system.work()
    (stored,) = system.events()  # messageId deduplicated the retry
    assert stored.message_id == "m-1"
    assert stored.context["userAgent"] == "Pyze-iOS/5.0"
    assert stored.context["ip"] == "203.0.113.9"
    assert stored.sent_at is not None


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        pytest.param("type", "type", id="type"),
        pytest.param("event", "event", id="event"),
        pytest.param("userId", "userId", id="userId"),
        pytest.param("eventTime", "eventTime", id="eventTime"),
        pytest.param("appKey", "appKey", id="appKey"),
    ],
)
def test_a_missing_field_is_a_400_naming_it(system: System, drop: str, field: str) -> None:
    body = event(system)
    del body[drop]
    r = system.client.post("/v1/events", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == f'"{field}" is not provided'
    assert [e["field"] for e in r.json()["errors"]] == [field]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"eventTime": "yesterday"}, "eventTime", id="time"),
        pytest.param({"type": "track"}, "type", id="type"),
        pytest.param({"context": {"ip": "not-an-ip"}}, "context.ip", id="ip"),
        pytest.param({"attributes": []}, "attributes", id="attributes"),
        pytest.param({"eventtime": "2020-06-03T17:03:48Z"}, "eventtime", id="unknown"),
    ],
)
def test_an_invalid_field_is_a_400_naming_it(
    system: System, changes: dict[str, Any], field: str
) -> None:
    r = system.client.post("/v1/events", json=event(system, **changes))
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]]


def test_bad_json_is_a_400_not_a_500(system: System) -> None:
    r = system.client.post("/v1/events", content=b'{"type": "event", ')
    assert r.status_code == 400


def test_unknown_app_key_is_401(system: System) -> None:
    r = system.client.post("/v1/events", json=event(system, appKey="nope"))
    assert r.status_code == 401


def test_a_key_for_another_app_is_403(system: System) -> None:
    other = system.create_product("Other app")
    r = system.client.post("/v1/events", json=event(system), headers=bearer(other.server_keys[0]))
    assert r.status_code == 403
    assert system.queued_jobs() == 0


def test_profile_example_merges_and_reads_back(system: System) -> None:
    key = bearer(system.server_key)
    r = system.client.post("/users/profile", json=PROFILE_EXAMPLE, headers=key)
    assert r.status_code == 202, r.text
    system.work()
    john = system.client.get("/users/profile/user123", headers=key)
    assert john.status_code == 200
    assert john.json() | {} == john.json()
    profile = john.json()
    assert profile["userId"] == "user123"
    assert profile["user_alias"] == [{"alias_label": "facebook", "alias_id": "fb123409"}]
    assert profile["custom-purchase"] == 30
    assert profile["custom-tags"] == ["whale", "high-spender"]
    assert profile["date_of_birth"] == "1994-07-06"
    # The alias finds the same user.
    assert system.client.get("/users/profile/fb123409", headers=key).json() == profile
    jane = system.client.get(
        "/users/profile/ca1ab028-185d-4833-a3af-5b5d46b62771", headers=key
    ).json()
    assert jane["email_id"] == "jane.doe@gmail.com"
    assert jane["custom-tags"] == []

    # Later profile calls change the same users: increment, array ops, null removes.
    update = {
        "user_profiles": [
            {
                "userId": "user123",
                "custom-purchase": {"inc": 5},
                "custom-tags": {"add": ["vip"]},
                "gender": None,
                "pyze_id": "p-1",
            },
            {"pyze_id": "p-1", "custom-tags": {"remove": ["whale"]}},
        ]
    }
    assert system.client.post("/users/profile", json=update, headers=key).status_code == 202
    system.work()
    profile = system.client.get("/users/profile/p-1", headers=key).json()
    assert profile["userId"] == "user123"
    assert profile["pyze_id"] == "p-1"
    assert profile["custom-purchase"] == 35
    assert profile["custom-tags"] == ["high-spender", "vip"]
    assert "gender" not in profile


def test_profile_fields_are_limited_to_50(system: System) -> None:
    key = bearer(system.server_key)
    fifty = {f"custom-{i}": i for i in range(50)}
    ok = {"user_profiles": [{"userId": "u"} | fifty]}
    assert system.client.post("/users/profile", json=ok, headers=key).status_code == 202
    too_many = {"user_profiles": [{"userId": "u", "custom-50": 1} | fifty]}
    r = system.client.post("/users/profile", json=too_many, headers=key)
    assert r.status_code == 400
    assert "up to 50 profile fields" in r.json()["error"]


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        pytest.param({"userId": "u", "date_of_birth": "06/07/1994"}, "date_of_birth", id="dob"),
        pytest.param({"userId": "u", "date_of_first_use": 3}, "date_of_first_use", id="first"),
        pytest.param({"userId": "u", "score": 1.5}, "score", id="float"),
        pytest.param({"userId": "u", "score": {"inc": "x"}}, "score.inc", id="inc"),
        pytest.param({"userId": "u", "tags": {"add": "x"}}, "tags.add", id="add"),
        pytest.param({"first_name": "x"}, "userId", id="no-id"),
    ],
)
def test_invalid_profile_fields_are_named(
    system: System, profile: dict[str, Any], field: str
) -> None:
    body = {"user_profiles": [profile]}
    r = system.client.post("/users/profile", json=body, headers=bearer(system.server_key))
    assert r.status_code == 400, r.text
    assert f"user_profiles[0].{field}" in [e["field"] for e in r.json()["errors"]]


def test_profiles_need_a_server_key(system: System) -> None:
    body = PROFILE_EXAMPLE
    assert system.client.post("/users/profile", json=body).status_code == 401
    r = system.client.post("/users/profile", json=body, headers=bearer(system.write_key))
    assert r.status_code == 403
    assert system.client.get("/users/profile/x", headers=bearer("nope")).status_code == 401
    r = system.client.get("/users/profile/x", headers=bearer(system.server_key))
    assert r.status_code == 404


def test_profile_events_are_identify_events(system: System) -> None:
    key = bearer(system.server_key)
    system.client.post("/users/profile", json=PROFILE_EXAMPLE, headers=key)
    system.work()
    rows = system.sql(sa.select(events.c.type, events.c.user_id).order_by(events.c.user_id))
    assert [tuple(r) for r in rows] == [
        ("identify", "ca1ab028-185d-4833-a3af-5b5d46b62771"),
        ("identify", "user123"),
    ]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param("2020-06-03", "2020-06-03T00:00:00+00:00", id="date-only"),
        pytest.param("20200603T170348Z", "2020-06-03T17:03:48+00:00", id="basic"),
        pytest.param("2020-06-03T17:03Z", "2020-06-03T17:03:00+00:00", id="no-seconds"),
        pytest.param("2020-06-03T17:03:48.250-07:00", "2020-06-04T00:03:48.250000+00:00", id="ms"),
    ],
)
def test_event_time_takes_every_iso_8601_form(system: System, sent: str, stored: str) -> None:
    body = event(system, eventTime=sent, sentAt=sent)
    r = system.client.post("/v1/events", json=body)
    assert r.status_code == 202, r.text
    system.work()
    (found,) = system.events()
    assert found.original_timestamp is not None
    assert found.original_timestamp.isoformat() == stored
    assert found.sent_at is not None and found.sent_at.isoformat() == stored


def test_not_iso_8601_is_a_400_naming_each_field(system: System) -> None:
    body = event(system, eventTime="03/06/2020", sentAt="2020")
    r = system.client.post("/v1/events", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == 'Not a valid input: "eventTime" is not an ISO-8601 date-time'
    assert [e["field"] for e in r.json()["errors"]] == ["eventTime", "sentAt"]


def test_a_body_over_the_limit_is_pyzes_400(system: System) -> None:
    body = event(system, attributes={"padding": "x" * 40_000})
    r = system.client.post("/v1/events", json=body)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["error"].startswith("Not a valid input: body")
    assert "32768 bytes" in answer["error"]
    profiles = {"user_profiles": [{"userId": "u", "bio": "x" * 2_000_000}]}
    r = system.client.post("/users/profile", json=profiles, headers=bearer(system.server_key))
    assert r.status_code == 400 and "exceeds the limit" in r.json()["error"]
    assert system.queued_jobs() == 0
