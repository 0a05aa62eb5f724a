"""GA4's Measurement Protocol against a real collector, each test reading back what was stored.

No maintained GA4 client is installable (``ga4mp`` on PyPI was last released in 2022), so
these replay the requests of Google's own pages byte for byte (the ``JSON.stringify`` of
their fetch calls), with ``api_secret`` set to the product's server key and the page's
measurement id registered on the product.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sightline.model import EventType
from sightline.store.products import add_identifier
from sightline.store.schema import user_attributes, users
from tests.harness import System

MEASUREMENT_ID = "G-XXXXXXXXXX"


def register(system: System) -> None:
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "ga4", MEASUREMENT_ID)


def send(
    system: System, body: bytes | dict[str, Any], path: str = "/mp/collect", **query: str
) -> Any:
    params = {"measurement_id": MEASUREMENT_ID, "api_secret": system.server_key} | query
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.client.post(path, params=params, content=content)


def test_sending_events_example(system: System) -> None:
    """https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events
    ("Try it": the tutorial_begin event), then the page's campaign_details example."""
    register(system)
    r = send(
        system,
        b'{"client_id":"XXXXXXXXXX.YYYYYYYYYY","events":[{"name":"tutorial_begin","params":{}}]}',
    )
    assert (r.status_code, r.content) == (204, b"")
    campaign = (
        b'{"client_id":"123456.7654321","events":[{"name":"campaign_details","params":'
        b'{"campaign_id":"google_1234","campaign":"Summer_fun","source":"google","medium":"cpc",'
        b'"term":"summer+travel","content":"logolink","session_id":"123",'
        b'"engagement_time_msec":"100"}}]}'
    )
    assert send(system, campaign).status_code == 204
    assert send(system, campaign).status_code == 204  # a retry: stored once
    system.work()
    stored = {e.name: e for e in system.events()}
    assert set(stored) == {"tutorial_begin", "campaign_details"}
    begin = stored["tutorial_begin"]
    assert (begin.type, begin.dialect, begin.anonymous_id) == (
        EventType.TRACK,
        "ga4",
        "XXXXXXXXXX.YYYYYYYYYY",
    )
    details = stored["campaign_details"]
    assert details.session_id == "123"
    assert details.properties == {
        "campaign_id": "google_1234",
        "campaign": "Summer_fun",
        "source": "google",
        "medium": "cpc",
        "term": "summer+travel",
        "content": "logolink",
        "engagement_time_msec": "100",
    }


def test_user_properties_example(system: System) -> None:
    """https://developers.google.com/analytics/devguides/collection/protocol/ga4/user-properties
    (the server code: customer_tier as a user property; "Override timestamp": a request-level
    timestamp_micros, here an hour ago since GA4 accepts 72 hours back)."""
    register(system)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    body = {
        "client_id": "CLIENT_ID",
        "user_id": "USER_ID",
        "timestamp_micros": int(at.timestamp() * 1_000_000),
        "user_properties": {"customer_tier": {"value": "PREMIUM"}},
        "events": [{"name": "add_payment_info"}],
    }
    assert send(system, body).status_code == 204
    system.work()
    [event] = system.events()
    assert (event.name, event.user_id, event.anonymous_id) == (
        "add_payment_info",
        "USER_ID",
        "CLIENT_ID",
    )
    assert event.timestamp == at
    assert event.context["traits"] == {"customer_tier": "PREMIUM"}
    stored = sa.select(users.c.external_id, user_attributes.c.name, user_attributes.c.value)
    joined = stored.join_from(users, user_attributes, users.c.id == user_attributes.c.user_id)
    assert [tuple(row) for row in system.sql(joined)] == [("USER_ID", "customer_tier", "PREMIUM")]


def test_page_view_is_a_page(system: System) -> None:
    register(system)
    body = {
        "client_id": "c1",
        "ip_override": "203.0.113.7",
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "device": {"language": "en-GB", "screen_resolution": "1280x2856"},
        "events": [
            {
                "name": "page_view",
                "params": {
                    "page_location": "https://shop.example/pricing?plan=pro",
                    "page_referrer": "https://search.example/",
                    "page_title": "Pricing",
                    "session_id": 1716,
                    "engagement_time_msec": 100,
                },
            }
        ],
    }
    assert send(system, body).status_code == 204
    system.work()
    [event] = system.events()
    assert (event.type, event.name, event.session_id) == (EventType.PAGE, "Pricing", "1716")
    page = event.context["page"]
    assert (page["url"], page["path"], page["search"]) == (
        "https://shop.example/pricing?plan=pro",
        "/pricing",
        "?plan=pro",
    )
    assert (page["title"], page["referrer"]) == ("Pricing", "https://search.example/")
    assert event.context["locale"] == "en-GB"
    assert event.context["ip"] in ("203.0.113.7", "203.0.113.0")  # as the product's IP policy
    assert event.context["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}
    assert event.context["screen"] == {"width": 1280, "height": 2856}
    assert event.properties == {"engagement_time_msec": 100}


def test_validation_server_example(system: System) -> None:
    """https://developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events:
    the page's invalid event and, byte for byte, the answer it shows."""
    register(system)
    r = send(
        system,
        b'{"client_id":"XXXXXXXXXX.YYYYYYYYYY","events":[{"name":"_badEventName","params":{}}]}',
        path="/debug/mp/collect",
    )
    assert r.status_code == 200
    assert r.json() == {
        "validationMessages": [
            {
                "fieldPath": "events",
                "description": "Event at index: [0] has invalid name [_badEventName]. Names must "
                "start with an alphabetic character.",
                "validationCode": "NAME_INVALID",
            }
        ]
    }
    valid = send(system, {"client_id": "c", "events": [{"name": "ok"}]}, path="/debug/mp/collect")
    assert valid.json() == {"validationMessages": []}
    system.work()
    assert system.events() == []  # the validation server stores nothing


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"events": [{"name": "a"}]}, "client_id", "VALUE_REQUIRED"),
    ({"client_id": "c", "events": []}, "events", "VALUE_REQUIRED"),
    ({"client_id": "c", "events": [{"name": "a"}] * 26}, "events", "EXCEEDED_MAX_ENTITIES"),
    ({"client_id": "c", "events": [{"name": "session_start"}]}, "events", "NAME_RESERVED"),
    ({"client_id": "c", "events": [{"name": "a" * 41}]}, "events", "VALUE_OUT_OF_BOUNDS"),
    (
        {"client_id": "c", "events": [{"name": "a", "params": {"p": "x" * 101}}]},
        "events[0].params.p",
        "VALUE_OUT_OF_BOUNDS",
    ),
    (
        {"client_id": "c", "events": [{"name": "a", "params": {"ga_x": 1}}]},
        "events[0].params.ga_x",
        "NAME_RESERVED",
    ),
    (
        {"client_id": "c", "events": [{"name": "a", "params": {"p": {"x": 1}}}]},
        "events[0].params.p",
        "UNSUPPORTED_TYPE",
    ),
    (
        {
            "client_id": "c",
            "user_properties": {"user_id": {"value": "x"}},
            "events": [{"name": "a"}],
        },
        "user_properties.user_id",
        "NAME_RESERVED",
    ),
    (
        {"client_id": "c", "timestamp_micros": 1_000_000, "events": [{"name": "a"}]},
        "timestamp_micros",
        "VALUE_OUT_OF_BOUNDS",
    ),
]


def test_invalid_measurements(system: System) -> None:
    register(system)
    for body, path, code in INVALID:
        debug = send(system, body, path="/debug/mp/collect").json()["validationMessages"]
        assert (path, code) in [(m["fieldPath"], m["validationCode"]) for m in debug], body
        r = send(system, body)
        assert r.status_code == 400, body  # GA4 would answer 2xx and drop it: see the dialect
        errors = r.json()["errors"]
        assert any(e["field"] == path and e["reason"].startswith(code) for e in errors), body
    assert system.queued_jobs() == 0


def test_measurement_id_and_api_secret(system: System) -> None:
    body = {"client_id": "c", "events": [{"name": "a"}]}
    assert send(system, body).status_code == 401  # G-XXXXXXXXXX is not registered
    register(system)
    assert send(system, body, api_secret=system.write_key).status_code == 401
    assert send(system, body, api_secret="nope").status_code == 401
    other = system.create_product("other")
    assert send(system, body, api_secret=other.server_keys[0]).status_code == 401
    # an app stream: firebase_app_id and app_instance_id
    app = {"app_instance_id": "inst-1", "events": [{"name": "app_event"}]}
    params = {"firebase_app_id": system.write_key, "api_secret": system.server_key}
    r = system.client.post("/mp/collect", params=params, json=app)
    assert r.status_code == 204
    # the write key stands for the measurement id on day one
    assert send(system, body, measurement_id=system.write_key).status_code == 204
    system.work()
    stored = {e.name: e for e in system.events()}
    assert set(stored) == {"a", "app_event"}
    assert stored["app_event"].anonymous_id == "inst-1"


def test_shared_body_rules(system: System) -> None:
    """Compression and GA4's 130 KB limit, through the shared body reader."""
    register(system)
    body = json.dumps({"client_id": "c", "events": [{"name": "zipped"}]}).encode()
    params = {"measurement_id": MEASUREMENT_ID, "api_secret": system.server_key}
    headers = {"Content-Encoding": "gzip"}
    r = system.client.post(
        "/mp/collect", params=params, content=gzip.compress(body), headers=headers
    )
    assert r.status_code == 204
    big = json.dumps({"client_id": "c", "events": [{"name": "a", "params": {"p": "x" * 140_000}}]})
    assert send(system, big.encode()).status_code == 413
    system.work()
    assert [e.name for e in system.events()] == ["zipped"]
