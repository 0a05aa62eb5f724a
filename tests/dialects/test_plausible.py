"""Plausible's ``POST /api/event``: its documented request and its own rules, end to end.

The request of Plausible's Events API reference (https://plausible.io/docs/events-api,
"Try it yourself") is replayed byte for byte; the other bodies follow the rules of
``Plausible.Ingestion.Request`` (plausible/analytics, lib/plausible/ingestion/request.ex)
and are what its trackers send (``plausible-tracker`` and ``@plausible-analytics/tracker``
in Chromium: tests/browser/test_plausible_tracker.py). Each test reads back what was stored.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from collector.salts import KEEP_SECONDS, DailySalts
from sightline.model import Event, EventType
from sightline.redis_keys import cookieless_salt_key
from sightline.store.products import add_identifier
from tests.cli.test_cli import run
from tests.harness import System

DOCS_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/85.0.4183.121 Safari/537.36 OPR/71.0.3770.284"
)
DOCS_BODY = b'{"name":"pageview","url":"http://dummy.site","domain":"dummy.site"}'
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def register(system: System, domain: str, product_id: str | None = None) -> None:
    with system.engine.begin() as conn:
        add_identifier(conn, product_id or system.product.id, "plausible", domain)


def post(
    system: System,
    body: dict[str, Any] | bytes,
    *,
    agent: str = AGENT,
    content_type: str = "text/plain",
    path: str = "/api/event",
    **headers: str,
) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.client.post(
        path,
        content=content,
        headers={"Content-Type": content_type, "User-Agent": agent, **headers},
    )


def stored(system: System) -> list[Event]:
    system.work()
    return system.events()[::-1]


def test_the_docs_example_is_stored(system: System) -> None:
    register(system, "dummy.site")
    r = post(
        system,
        DOCS_BODY,
        agent=DOCS_USER_AGENT,
        content_type="application/json",
        **{"X-Forwarded-For": "127.0.0.1"},
    )
    assert (r.status_code, r.text) == (202, "ok")
    assert r.headers["content-type"].startswith("text/plain")
    assert "x-plausible-dropped" not in r.headers
    [event] = stored(system)
    assert (event.type, event.name, event.dialect) == (EventType.PAGE, "page_view", "plausible")
    assert event.product_id == system.product.id
    assert event.context["page"] == {"url": "http://dummy.site", "path": "/", "search": ""}
    assert event.context["userAgent"] == DOCS_USER_AGENT
    assert event.anonymous_id is not None and UUID.match(event.anonymous_id)
    assert event.user_id is None


def test_one_visitor_is_one_anonymous_id_for_the_day(system: System) -> None:
    register(system, "shop.example")
    other = system.create_product("Other")
    page = {"n": "pageview", "d": "shop.example", "r": None, "w": 1280, "h": 0}
    for path in ("/", "/pricing"):
        assert post(system, page | {"u": f"https://shop.example{path}"}).status_code == 202
    post(system, page | {"u": "https://shop.example/"}, agent=AGENT + " other")
    post(system, page | {"u": "https://other.example/", "d": other.write_keys[0]})
    events = stored(system)
    mine = [e for e in events if e.product_id == system.product.id]
    assert [e.context["page"]["path"] for e in mine] == ["/", "/pricing", "/"]
    first, second, other_agent = (e.anonymous_id for e in mine)
    assert first == second != other_agent
    [elsewhere] = [e for e in events if e.product_id == other.id]
    assert elsewhere.anonymous_id not in (first, other_agent)  # the product is in the hash
    assert mine[0].context["screen"] == {"width": 1280}
    # Only the day's salt is in Redis, for two days at most: never an address or an agent.
    keys = [k.decode() for k in cast(list[bytes], system.redis.keys("sightline:cookieless-salt:*"))]
    assert keys == [cookieless_salt_key(datetime.now(UTC).date())]
    assert 0 < system.redis.ttl(keys[0]) <= KEEP_SECONDS


def test_custom_event_with_props_revenue_and_hash_mode(system: System) -> None:
    register(system, "shop.example")
    body = {
        "n": "Purchase",
        "u": "https://www.shop.example/checkout?step=2#/done",
        "d": "www.shop.example",
        "r": "https://news.example/article",
        "p": json.dumps({"plan": "pro", "seats": 3, "empty": "", "list": [1], "null": None}),
        "$": {"amount": "15.99", "currency": "usd"},
        "i": False,
        "h": 1,
        "v": 36,
    }
    assert post(system, body).status_code == 202
    [event] = stored(system)
    assert (event.type, event.name) == (EventType.TRACK, "Purchase")
    assert event.properties == {"plan": "pro", "seats": 3, "revenue": 15.99, "currency": "USD"}
    assert event.context["page"] == {
        "url": "https://www.shop.example/checkout?step=2#/done",
        "path": "/checkout#/done",
        "search": "?step=2",
        "hash": "#/done",
        "referrer": "https://news.example/article",
    }
    assert event.context["interactive"] is False
    assert event.context["campaign"]["referrer_host"] == "news.example"


def test_long_names_and_props_as_an_object(system: System) -> None:
    register(system, "shop.example")
    body = {
        "name": 404,
        "url": "https://shop.example/missing",
        "domain": "shop.example",
        "referrer": "https://shop.example/",
        "props": {"path": "/missing"},
        "revenue": json.dumps({"amount": 7, "currency": "EUR"}),
    }
    assert post(system, body, content_type="application/json").status_code == 202
    [event] = stored(system)
    assert event.name == "404"
    assert event.properties == {"path": "/missing", "revenue": 7.0, "currency": "EUR"}


def test_engagement(system: System) -> None:
    register(system, "shop.example")
    body = {"n": "engagement", "u": "https://shop.example/", "d": "shop.example", "sd": 130}
    assert post(system, body | {"e": "2500"}).status_code == 202
    assert post(system, body | {"sd": "x", "e": 40}).status_code == 202
    first, second = stored(system)
    assert (first.type, first.name) == (EventType.ENGAGEMENT, "engagement")
    assert first.properties == {"engaged_ms": 2500, "max_scroll_pct": 100}
    assert second.properties == {"engaged_ms": 40}


def test_a_comma_list_counts_the_event_for_each_site(system: System) -> None:
    register(system, "a.example")
    register(system, "b.example")  # the same product: stored once
    other = system.create_product("Rollup")
    domains = f"a.example, b.example,{other.write_keys[0]},nobody.example"
    r = post(system, {"n": "Signup", "u": "https://a.example/", "d": domains})
    assert (r.status_code, r.text, r.headers["x-plausible-dropped"]) == (202, "ok", "1")
    events = stored(system)
    assert sorted(e.product_id for e in events) == sorted([system.product.id, other.id])
    assert {e.name for e in events} == {"Signup"}


def test_no_domain_is_the_urls_host(system: System) -> None:
    register(system, "shop.example")
    assert post(system, {"n": "pageview", "u": "https://www.shop.example/"}).status_code == 202
    assert len(stored(system)) == 1


def test_an_unknown_site_is_dropped_as_plausible_drops_it(system: System) -> None:
    r = post(system, {"n": "pageview", "u": "https://x.example/", "d": "x.example"})
    assert (r.status_code, r.text, r.headers["x-plausible-dropped"]) == (202, "ok", "1")
    assert system.queued_jobs() == 0
    # A product that allows other origins only: dropped the same way.
    shop = system.create_product("Shop", origins=("https://shop.example",))
    r = post(
        system,
        {"n": "pageview", "u": "https://evil.example/", "d": shop.write_keys[0]},
        Origin="https://evil.example",
    )
    assert (r.status_code, r.headers["x-plausible-dropped"]) == (202, "1")
    assert system.queued_jobs() == 0
    # Under /debug the refusal itself is the answer.
    debug = post(system, {"n": "pageview", "u": "https://x.example/"}, path="/debug/api/event")
    assert debug.status_code == 401


# Refused at the edge, before any storage: one database is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"u": "https://shop.example/", "d": "shop.example"}, "name", id="no-name"),
        pytest.param({"n": " ", "u": "https://shop.example/"}, "n", id="blank-name"),
        pytest.param({"n": "x" * 121, "u": "https://shop.example/"}, "n", id="long-name"),
        pytest.param({"n": "pageview", "d": "shop.example"}, "url", id="no-url"),
        pytest.param({"n": "pageview", "u": "data:text/html,hi", "d": "a"}, "u", id="data-url"),
        pytest.param({"n": "pageview", "u": "https://a/" + "x" * 2000}, "u", id="long-url"),
        pytest.param({"n": "pageview", "u": "/relative"}, "d", id="no-site"),
        pytest.param({"n": "pageview", "u": "http://[::1"}, "d", id="bad-host"),
        pytest.param({"n": "pageview", "u": "https://a/", "d": " "}, "d", id="blank-site"),
        pytest.param({"n": "engagement", "u": "https://a/", "sd": "x"}, "n", id="engagement"),
        pytest.param({"n": "e", "u": "https://a/", "p": {"k": "v" * 2001}}, "p", id="prop-value"),
        pytest.param({"n": ["x"], "u": "https://a/"}, "n", id="name-type"),
        pytest.param({"n": "e", "u": "https://a/", "h": "yes"}, "h", id="hash-mode"),
        pytest.param(b'{"n": "pageview", "u": ', "$", id="not-json"),
        pytest.param(b"[]", "$", id="not-an-object"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(
    system: System, body: dict[str, Any] | bytes, field: str
) -> None:
    register(system, "shop.example")
    r = post(system, body)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert system.queued_jobs() == 0


def test_shared_body_rules(system: System) -> None:
    register(system, "shop.example")
    body = json.dumps({"n": "pageview", "u": "https://shop.example/"}).encode()
    r = post(system, gzip.compress(body), **{"Content-Encoding": "gzip"})
    assert r.status_code == 202
    assert post(system, b" " * (65 * 1024) + body).status_code == 413
    assert post(system, body, **{"Content-Encoding": "br"}).status_code == 415
    assert len(stored(system)) == 1


def test_debug_shows_the_records_and_stores_nothing(system: System) -> None:
    register(system, "shop.example")
    body = {"n": "Signup", "u": "https://shop.example/", "p": {"plan": "pro"}}
    r = post(system, body, path="/debug/api/event")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["stored"] is False
    [records] = answer["records"]
    [event] = records["events"]
    assert (event["name"], event["properties"]) == ("Signup", {"plan": "pro"})
    assert UUID.match(event["anonymous_id"])
    assert system.queued_jobs() == 0


def test_salts_are_one_per_day_and_shared(system: System) -> None:
    async def check() -> None:
        redis = Redis.from_url(system.settings.redis_url or "")
        try:
            day = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
            one, two = DailySalts(redis, 5.0), DailySalts(redis, 5.0)
            first = await one.today(day)
            assert await two.today(day) == first  # a second collector hashes with the same
            assert await one.today(day + timedelta(minutes=2)) != first  # a new UTC day
        finally:
            await redis.aclose()

    asyncio.run(check())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_over_the_products_rate_limit_is_a_429(system: System) -> None:
    register(system, "shop.example")
    run(system, "products", "limits", system.product.id, "--per-ip", "2")
    assert system.client.portal is not None
    system.client.portal.call(system.client.app_state["directory"].reload)
    body = {"n": "pageview", "u": "https://shop.example/"}
    statuses = [post(system, body).status_code for _ in range(4)]
    assert statuses[:2] == [202, 202] and statuses[-1] == 429
