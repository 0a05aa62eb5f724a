"""PostHog's capture API: posthog-python against a real collector, and posthog-js's wire.

The Python SDK (``posthog`` from PyPI) runs unchanged against the collector on a real
port (``LiveCollector``), with and without gzip. The browser SDK runs in Chromium in
``tests/browser/test_posthog_tracker.py``; here its transports are replayed as it
sends them (a gzip body as ``text/plain`` without a ``compression`` parameter, a
``data=`` base64 form for ``sendBeacon``, lz-string's ``compressToBase64`` from old
versions, GET ``?data=``), each test reading back what the store holds.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import lzstring
import pytest
from posthog import Posthog

from sightline.model import Event, EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from tests.browser.live import LiveCollector
from tests.dialects.posthog_support import account, alias_owners, profile
from tests.harness import System
from tests.servers import RedisServer

# ``lz-string`` 1.5.0 (npm), ``LZString.compressToBase64`` of LZ64_TEXT: what posthog-js's
# ``compression=lz64`` sent. Decoded by the ``lzstring`` package, astral characters included.
LZ64_TOKEN = "KEY"
LZ64_TEXT = (
    '{"api_key":"KEY","batch":[{"event":"Bought 🐘 café","distinct_id":"u-lz",'
    '"properties":{"price":9.5,"note":"ünïcödé ✓"},"uuid":"0190f0c5-0000-7000-8000-00000000lz64"}]}'
)
LZ64_JS = (
    "N4IghgDglg+g1gUwJ4gFwgNIFECaIA0IARmAC4DGAFmgNqgIBuCAdqWiAEID2ArgOaVSAAkC8G4AwdoeTAAzAJcEQA"
    "EygBnUlGblSMKIvY8AtABsAXgogAnLhAQX1CFWlCWo5BGgCcAOgCshZlyk7ugAP8wA9+QAb4qyQoDI5CAAvoQ8PLrsA"
    "AwAjB6Z0pnkPgaZpZkGAOxlBgAc1WUNmaYAbAAsyQC6SUA="
)
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"


def _events(system: System, **match: Any) -> list[Event]:
    system.work()
    found = [e for e in system.events() if e.dialect == "posthog"]
    found = [e for e in found if all(getattr(e, k) == v for k, v in match.items())]
    return sorted(found, key=lambda e: (e.received_at, e.message_id))


def _browser_event(key: str, event: str, distinct_id: str, **properties: Any) -> dict[str, Any]:
    """An event as posthog-js builds it (the properties its tests rely on)."""
    return {
        "uuid": properties.pop("uuid", None)
        or f"0190f0c5-{abs(hash(event)) % 10**4:04d}-7000-8000-000000000001",
        "event": event,
        "properties": {
            "$current_url": "https://shop.example/pricing?utm_source=news&utm_medium=email",
            "$host": "shop.example",
            "$pathname": "/pricing",
            "title": "Pricing",
            "$referrer": "https://search.example/?q=shop",
            "$browser_language": "fr-FR",
            "$screen_width": 1280,
            "$screen_height": 720,
            "$lib": "web",
            "$lib_version": "1.449.2",
            "$raw_user_agent": AGENT,
            "distinct_id": distinct_id,
            "$device_id": "dev-1",
            "$session_id": "sess-1",
            "token": key,
            "$is_identified": distinct_id != "dev-1",
            **properties,
        },
        "timestamp": "2026-11-30T10:00:00.000Z",
    }


def test_posthog_js_gzip_body_without_parameter(system: System) -> None:
    """posthog-js 1.449: ``POST /e/`` with a gzip ``text/plain`` body and no ``compression``."""
    body = {
        "api_key": system.write_key,
        "batch": [_browser_event(system.write_key, "$pageview", "dev-1")],
        "sent_at": "2026-11-30T10:00:02.000Z",
    }
    r = system.client.post(
        "/e/",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "text/plain", "Origin": "https://shop.example"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "Ok"}
    [event] = _events(system)
    assert (event.type, event.name) == (EventType.PAGE, "page_view")
    assert (event.user_id, event.anonymous_id, event.session_id) == (None, "dev-1", "sess-1")
    assert event.context["page"] == {
        "url": "https://shop.example/pricing?utm_source=news&utm_medium=email",
        "path": "/pricing",
        "search": "?utm_source=news&utm_medium=email",
        "title": "Pricing",
        "referrer": "https://search.example/?q=shop",
    }
    assert event.context["locale"] == "fr-FR"
    assert event.context["screen"] == {"width": 1280, "height": 720}
    assert event.context["library"] == {"name": "web", "version": "1.449.2"}
    assert event.context["userAgent"] == AGENT
    assert event.context["campaign"]["source"] == "news"
    assert "token" not in event.properties
    # now + (timestamp - sent_at): sent 2 s after it happened, so 2 s before it arrived
    assert event.sent_at is not None
    assert abs(event.received_at - timedelta(seconds=2) - event.timestamp) < timedelta(seconds=1)


def test_identify_aliases_the_anonymous_id_and_sets_traits(system: System) -> None:
    key = system.write_key
    anonymous = _browser_event(
        key, "Viewed Plan", "dev-1", uuid="0190f0c5-0001-7000-8000-000000000001"
    )
    identify = _browser_event(
        key,
        "$identify",
        "user-7",
        uuid="0190f0c5-0002-7000-8000-000000000002",
        **{"$anon_distinct_id": "dev-1", "$user_id": "user-7"},
    )
    identify["$set"] = {"email": "ann@example.com", "plan": "pro"}
    identify["$set_once"] = {"first_plan": "pro", "$initial_utm_medium": None}
    later = _browser_event(key, "Upgraded", "user-7", uuid="0190f0c5-0003-7000-8000-000000000003")
    later["$set"] = {"plan": "team"}
    later["$set_once"] = {"first_plan": "team"}  # must not overwrite
    later["properties"]["$unset"] = ["legacy"]
    r = system.client.post("/batch/", json={"api_key": key, "batch": [anonymous, identify, later]})
    assert r.status_code == 200, r.text
    viewed, identified, upgraded = _events(system)
    assert (viewed.user_id, viewed.anonymous_id) == (None, "dev-1")
    assert (identified.type, identified.name) == (EventType.IDENTIFY, "identify")
    assert (identified.user_id, identified.anonymous_id) == ("user-7", "dev-1")
    assert (upgraded.user_id, upgraded.name) == ("user-7", "Upgraded")
    assert alias_owners(system.engine, system.product.id) == {"dev-1": "user-7"}
    assert profile(system.engine, system.product.id, "user-7") == {
        # A write key's e-mail stays an attribute; the user's e-mail (what identifies the
        # person) is server-only: README, "What a write key can change".
        "email": None,
        "account": None,
        "attributes": {"email": "ann@example.com", "plan": "team", "first_plan": "pro"},
    }


def test_groups_alias_and_set_once_in_separate_requests(system: System) -> None:
    """Profile operations across requests (and worker batches): ``$set_once`` keeps the first."""
    key = system.write_key
    sends: list[dict[str, Any]] = [
        {"event": "$set_once", "distinct_id": "u2", "$set_once": {"signup": "2024-01-01"}},
        {"event": "$set_once", "distinct_id": "u2", "$set_once": {"signup": "2025-05-05"}},
        {
            "event": "$groupidentify",
            "distinct_id": "u2",
            "properties": {
                "$group_type": "company",
                "$group_key": "acme",
                "$group_set": {"name": "Acme", "seats": 12},
                "$groups": {"company": "acme"},
            },
        },
        {"event": "Invited", "distinct_id": "u2", "properties": {"$groups": {"company": "acme"}}},
        # posthog-python's alias(previous_id="old-2", distinct_id="u2")
        {"event": "$create_alias", "distinct_id": "old-2", "properties": {"alias": "u2"}},
        # posthog-js's alias("alt-2") by an identified user
        {
            "event": "$create_alias",
            "distinct_id": "u2",
            "properties": {"alias": "alt-2", "$is_identified": True},
        },
    ]
    for index, body in enumerate(sends):
        r = system.client.post("/capture/", json={**body, "api_key": key})
        assert r.status_code == 200, r.text
        if index == 0:
            system.work()  # the second $set_once meets the first in the store
    events = _events(system)
    assert [e.type for e in events] == [
        EventType.IDENTIFY,
        EventType.IDENTIFY,
        EventType.GROUP,
        EventType.TRACK,
        EventType.ALIAS,
        EventType.ALIAS,
    ]
    assert [e.account_id for e in events[2:4]] == ["acme", "acme"]
    assert profile(system.engine, system.product.id, "u2") == {
        "email": None,
        "account": "acme",
        "attributes": {"signup": "2024-01-01"},
    }
    assert account(system.engine, system.product.id, "acme") == {
        "name": "Acme",
        "traits": {"name": "Acme", "seats": 12, "group_type": "company"},
    }
    assert alias_owners(system.engine, system.product.id) == {"old-2": "u2", "alt-2": "u2"}


def test_form_base64_beacon_answers_204(system: System) -> None:
    """``sendBeacon``: ``data=<base64>`` form, ``compression=base64``, ``beacon=1``."""
    body = [
        _browser_event(system.write_key, "$pageleave", "user-3", **{"$prev_pageview_duration": 3.5})
    ]
    data = base64.b64encode(json.dumps(body).encode()).decode()
    r = system.client.post(
        "/e/?compression=base64&beacon=1",
        content=f"data={quote(data)}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 204, r.text
    assert r.content == b""
    [event] = _events(system)
    assert (event.type, event.name, event.user_id) == (EventType.ENGAGEMENT, "engagement", "user-3")
    assert event.properties["$prev_pageview_duration"] == 3.5


def test_get_with_data_and_the_send_time_in_ms(system: System) -> None:
    """Old posthog-js: ``GET /e/?data=<base64>&_=<ms>``; the ``_`` clock corrects the time."""
    sent = datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)
    body = {
        "event": "$autocapture",
        "distinct_id": "user-4",
        "properties": {"token": system.write_key, "$event_type": "click", "$el_text": "Buy"},
        "timestamp": "2026-11-30T10:00:00Z",
    }
    data = base64.b64encode(json.dumps(body).encode()).decode()
    millis = int(sent.timestamp() * 1000)
    r = system.client.get(f"/e?data={quote(data)}&_={millis}&ver=1.0")
    assert r.status_code == 200, r.text
    [event] = _events(system)
    assert (event.type, event.name, event.properties["$el_text"]) == (
        EventType.CLICK,
        "click",
        "Buy",
    )
    assert event.sent_at == sent
    assert abs(event.received_at - timedelta(seconds=5) - event.timestamp) < timedelta(seconds=1)


def test_whole_body_base64_on_every_capture_path(system: System) -> None:
    paths = [
        p + s
        for p in ("/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch")
        for s in ("", "/")
    ]
    for index, path in enumerate(paths):
        body = {"event": f"Ping {index}", "distinct_id": "user-5", "api_key": system.write_key}
        r = system.client.post(path, content=base64.b64encode(json.dumps(body).encode()))
        assert r.status_code == 200, (path, r.text)
    assert {e.name for e in _events(system, user_id="user-5")} == {
        f"Ping {index}" for index in range(len(paths))
    }


def test_lz64_from_lz_string(system: System) -> None:
    """What lz-string 1.5.0 (posthog-js's ``lz64``) wrote, and what the Python package writes."""
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "posthog", LZ64_TOKEN)
    r = system.client.post(
        "/e/?compression=lz64",
        content=f"data={quote(LZ64_JS)}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    own = lzstring.LZString().compressToBase64(
        LZ64_TEXT.replace("u-lz", "u-lz2").replace('lz64"', 'lz65"')
    )
    # the form's own compression field, no query parameter, as old posthog-js's beacon sent
    r = system.client.post(
        "/e/",
        content=f"data={quote(own)}&compression=lz64",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    first, second = _events(system)
    assert (first.name, first.user_id, first.properties) == (
        "Bought 🐘 café",
        "u-lz",
        {"price": 9.5, "note": "ünïcödé ✓"},
    )
    assert first.message_id == "0190f0c5-0000-7000-8000-00000000lz64"
    assert second.user_id == "u-lz2"


def test_python_offset_and_duplicate_uuid(system: System) -> None:
    """``offset`` (ms before the request) dates the event; a repeated ``uuid`` is stored once."""
    body = {
        "api_key": system.write_key,
        "batch": [
            {
                "event": "Late",
                "distinct_id": "u6",
                "offset": 60_000,
                "uuid": "0190f0c5-0006-7000-8000-000000000006",
            }
        ],
    }
    for _ in range(2):
        assert system.client.post("/batch/", json=body).status_code == 200
    [event] = _events(system)
    assert abs(event.received_at - timedelta(minutes=1) - event.timestamp) < timedelta(seconds=1)


def test_refusals_are_posthogs(system: System) -> None:
    r = system.client.post("/e/", json={"event": "x", "distinct_id": "u", "api_key": "phc_unknown"})
    assert r.status_code == 401
    assert r.json()["type"] == "authentication_error"
    assert r.json()["code"] == "invalid_api_key"
    r = system.client.post("/e/", json={"event": "x", "distinct_id": "u"})
    assert (r.status_code, r.json()["code"]) == (401, "missing_api_key")
    r = system.client.post("/e/", json={"event": "x", "distinct_id": "u", "$token": "phc_no"})
    assert (r.status_code, r.json()["code"]) == (401, "invalid_api_key")
    r = system.client.post("/e/", json={"event": "x", "api_key": system.write_key})
    assert r.status_code == 400
    assert r.json()["attr"] == "distinct_id"
    r = system.client.post(
        "/batch/", json={"api_key": system.write_key, "batch": [{"distinct_id": "u"}]}
    )
    assert (r.status_code, r.json()["attr"]) == (400, "batch[0].event")
    r = system.client.post("/e/?compression=zstd", content=b"{}")
    assert (r.status_code, r.json()["attr"]) == (400, "compression")
    r = system.client.post("/e/", content=b"not json, not base64!")
    assert (r.status_code, r.json()["attr"]) == (400, "data")
    bomb = gzip.compress(b'{"event": "' + b"a" * 3_000_000 + b'"}')
    r = system.client.post("/e/", content=bomb, headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    r = system.client.post("/e/", content=gzip.compress(b"{}"), headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    mixed = [
        {"event": "a", "distinct_id": "u", "properties": {"token": system.write_key}},
        {"event": "b", "distinct_id": "u", "properties": {"token": "other"}},
    ]
    r = system.client.post("/e/", json=mixed)
    assert (r.status_code, r.json()["attr"]) == (400, "api_key")
    long_id = {"event": "x", "properties": {"distinct_id": "u" * 256}, "api_key": system.write_key}
    r = system.client.post("/e/", json=long_id)
    assert (r.status_code, r.json()["attr"]) == (400, "distinct_id")
    late = {"event": "x", "distinct_id": "u", "api_key": system.write_key, "offset": 10**19}
    r = system.client.post("/e/", json=late)
    assert (r.status_code, r.json()["attr"]) == (400, "offset")
    deep = "[" * 100 + "]" * 100
    r = system.client.post("/flags/?v=2", content='{"token": ' + deep + "}")
    assert r.status_code == 400
    assert "nested deeper" in r.json()["detail"]
    assert _events(system) == []


def test_an_origin_the_product_does_not_allow(system: System) -> None:
    product = system.create_product("Shop", origins=("https://shop.example",))
    body = {"event": "x", "distinct_id": "u", "api_key": product.write_keys[0]}
    r = system.client.post("/e/", json=body, headers={"Origin": "https://evil.example"})
    assert (r.status_code, r.json()["type"]) == (403, "authentication_error")
    r = system.client.post("/e/", json=body, headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    preflight = system.client.options(
        "/i/v0/e/",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"


def test_flags_decide_and_remote_config_are_empty(system: System) -> None:
    key = system.write_key
    form = "data=" + quote(
        base64.b64encode(json.dumps({"token": key, "distinct_id": "d"}).encode()).decode()
    )
    for path in ("/flags/?v=2&compression=base64", "/decide/?v=4&compression=base64"):
        r = system.client.post(
            path, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["featureFlags"] == {} and r.json()["flags"] == {}
        assert r.json()["errorsWhileComputingFlags"] is False
    r = system.client.post("/decide/?v=3", json={"token": key, "distinct_id": "d"})
    assert r.json()["sessionRecording"] is False
    assert system.client.get(f"/flags?token={key}").status_code == 200
    assert system.client.post("/flags/?v=2", json={"token": "nope"}).status_code == 401
    config = system.client.get(f"/array/{key}/config").json()
    assert config["hasFeatureFlags"] is False and config["analytics"] == {"endpoint": "/i/v0/e/"}
    script = system.client.get(f"/array/{key}/config.js")
    assert script.headers["content-type"].startswith("application/javascript")
    assert f'_POSTHOG_REMOTE_CONFIG["{key}"]' in script.text
    assert system.client.get("/array/nope/config").status_code == 404
    assert system.client.get("/array/nope/config.js").status_code == 404


def test_debug_shows_the_records_without_storing(system: System) -> None:
    body = {
        "event": "$pageview",
        "distinct_id": "u",
        "api_key": system.write_key,
        "properties": {"$current_url": "https://shop.example/"},
    }
    r = system.client.post("/debug/e/", json=body)
    assert r.status_code == 200, r.text
    [record] = r.json()["records"]
    assert record["events"][0]["type"] == "page"
    assert _events(system) == []


# -- posthog-python, unchanged, against the collector on a real port --------------------


@pytest.fixture
def live(settings: Settings, redis_server: RedisServer) -> Iterator[LiveCollector]:
    with LiveCollector(settings, redis_server, origins=()) as collector:
        yield collector


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_posthog_python(live: LiveCollector, compress: bool) -> None:
    # A server SDK: the server key, so the e-mail it sets is the user's (a write key's is not).
    client = Posthog(live.server_key, host=live.url, gzip=compress, sync_mode=True, max_retries=0)
    client.capture(
        "Signed Up",
        distinct_id="py-1",
        properties={"plan": "pro", "$current_url": "https://app.example/signup"},
        groups={"company": "acme-py"},
        uuid="0190f0c5-0100-7000-8000-000000000001",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    client.set(distinct_id="py-1", properties={"name": "Ann", "email": "ann@py.example"})
    client.set_once(distinct_id="py-1", properties={"first_seen_plan": "pro"})
    client.set_once(distinct_id="py-1", properties={"first_seen_plan": "free"})
    client.alias(previous_id="anon-py", distinct_id="py-1")
    # posthog-python has no identify(): PostHog's docs capture $identify
    client.capture(
        "$identify",
        distinct_id="py-1",
        properties={"$anon_distinct_id": "anon-py-2", "$set": {"role": "admin"}},
    )
    client.group_identify("company", "acme-py", {"name": "Acme Py", "employees": 11})
    client.capture(
        "$pageview", distinct_id="py-1", properties={"$current_url": "https://app.example/home?x=1"}
    )
    client.shutdown()
    stored = live.events()
    assert sorted(e.name for e in stored) == sorted(
        ["Signed Up", "identify", "identify", "identify", "alias", "identify", "group", "page_view"]
    )
    signed_up = next(e for e in stored if e.name == "Signed Up")
    assert signed_up.message_id == "0190f0c5-0100-7000-8000-000000000001"
    assert (signed_up.user_id, signed_up.account_id) == ("py-1", "acme-py")
    assert signed_up.properties["plan"] == "pro"
    assert signed_up.context["library"]["name"] == "posthog-python"
    assert signed_up.context["userAgent"].startswith("posthog-python/")
    # sent a moment after it was captured: the stored time is the capture time
    assert abs(signed_up.timestamp - datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) < timedelta(
        seconds=5
    )
    view = next(e for e in stored if e.name == "page_view")
    assert (view.type, view.context["page"]["search"]) == (EventType.PAGE, "?x=1")
    assert profile(live.engine, live.product.id, "py-1") == {
        "email": "ann@py.example",
        "account": None,
        "attributes": {
            "name": "Ann",
            "email": "ann@py.example",
            "first_seen_plan": "pro",
            "role": "admin",
        },
    }
    assert alias_owners(live.engine, live.product.id) == {"anon-py": "py-1", "anon-py-2": "py-1"}
    assert account(live.engine, live.product.id, "acme-py") == {
        "name": "Acme Py",
        "traits": {"name": "Acme Py", "employees": 11, "group_type": "company"},
    }


def test_ids_too_long_for_the_store_are_left_out(system: System) -> None:
    """PostHog takes ids of any length; Sightline's columns hold 255 characters."""
    long = "x" * 300
    body = {
        "api_key": system.write_key,
        "event": "Long",
        "distinct_id": "u8",
        "$set": {long: 1, "email": "not an address", "ok": True},
        "properties": {"$device_id": long, "$session_id": long, "$groups": {"company": long}},
    }
    assert system.client.post("/e/", json=body).status_code == 200
    [event] = _events(system)
    assert (event.user_id, event.anonymous_id, event.account_id) == ("u8", None, None)
    assert event.session_id != long  # the worker's own session, as for an event without one
    user = profile(system.engine, system.product.id, "u8")
    assert user == {
        "email": None,
        "account": None,
        "attributes": {"email": "not an address", "ok": True},
    }
