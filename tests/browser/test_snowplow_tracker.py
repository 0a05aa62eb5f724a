"""@snowplow/browser-tracker (npm, from node_modules) in Chromium against the REAL collector.

The page comes from the test site's origin, which the product allows; the tracker POSTs
``payload_data`` with credentials (a CORS preflight first), GETs ``/i`` when told to, and
sends ``SP-Anonymous`` with server anonymisation. Every assertion is on the store after
the worker ran. One collector (SQLite) serves the whole module.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route
from redis import Redis

from sightline.model import Event, EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from tests.browser.live import LiveCollector
from tests.browser.support import ROOT, WAIT_SECONDS, Site
from tests.harness import REDIS_TIMEOUT
from tests.servers import RedisServer

pytestmark = pytest.mark.browser

PACKAGE = ROOT / "node_modules" / "@snowplow" / "browser-tracker"
APP_ID = "shop-web"
"""A Snowplow app id the product registered: pages keep the ``appId`` they have."""
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
USER_CONTEXT = "iglu:com.acme/user_context/jsonschema/1-0-0"
TP2 = "/com.snowplowanalytics.snowplow/tp2"


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    redis_server: RedisServer,
    site: Site,
) -> Iterator[LiveCollector]:
    workdir = tmp_path_factory.mktemp("snowplow")
    shutil.copyfile(sqlite_template, workdir / "sightline.db")
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(workdir / "data"),
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": f"sqlite:///{workdir / 'sightline.db'}",
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    with LiveCollector(settings, redis_server, (site.url,)) as collector:
        with collector.engine.begin() as conn:
            add_identifier(conn, collector.product.id, "snowplow", APP_ID)
        yield collector


def tracker_page(site: Site, script: str) -> str:
    """A page of the test site that loads the browser tracker's UMD build and runs ``script``."""
    tracker = (PACKAGE / "dist" / "index.umd.min.js").read_text(encoding="utf-8")
    return site.add(
        "<!doctype html><html><head><meta charset=utf-8><title>Snowplow page</title>"
        f"<script>{tracker}</script><script>const sp = window.snowplowBrowserTracking;"
        f"{script}</script></head><body style='height: 4000px'><p>hello</p></body></html>"
    )


def wait_for(live: LiveCollector, check: Any, what: str) -> list[Event]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        events = live.events()
        if check(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"not stored in time: {what}; stored {events}")
        time.sleep(0.1)


def test_page_view_ping_structured_and_self_describing(
    page: Page, site: Site, live: LiveCollector
) -> None:
    assert json.loads((PACKAGE / "package.json").read_text())["version"] == "4.10.1"
    config = {"appId": live.write_key, "platform": "web", "contexts": {"webPage": True}}
    url = tracker_page(
        site,
        f"sp.newTracker('sp1', {json.dumps(live.url)}, {json.dumps(config)});"
        "sp.setUserId('user-42');"
        "sp.enableActivityTracking({minimumVisitLength: 1, heartbeatDelay: 1});"
        "sp.trackPageView();"
        "sp.trackStructEvent({category: 'video', action: 'play', label: 'intro',"
        " property: 'hd', value: 3.5});"
        f"sp.trackSelfDescribingEvent({{event: {{schema: '{LINK_CLICK}',"
        " data: {targetUrl: 'https://docs.example/'}},"
        f" context: [{{schema: '{USER_CONTEXT}', data: {{plan: 'pro'}}}}]}});",
    )
    page.goto(url + "?utm_source=newsletter")

    def has_ping(events: list[Event]) -> bool:
        page.mouse.move(10 + time.monotonic() % 50, 20)  # activity, so the tracker pings
        page.mouse.wheel(0, 40)
        return any(e.name == "page_ping" for e in events)

    events = [e for e in wait_for(live, has_ping, "a page ping") if e.user_id == "user-42"]
    by_name = {e.name: e for e in events}
    assert {"page_view", "play", "link_click", "page_ping"} <= set(by_name)
    view, play, click, ping = (by_name[n] for n in ("page_view", "play", "link_click", "page_ping"))
    assert len({e.message_id for e in events}) == len(events)  # each its own eid
    for event in (view, play, click, ping):
        uuid.UUID(event.message_id)  # the tracker's eid
        assert event.dialect == "snowplow" and event.product_id == live.product.id
        assert event.anonymous_id and event.session_id  # duid and sid from its cookies
        assert event.anonymous_id == view.anonymous_id and event.session_id == view.session_id
        assert event.context["page"]["url"] == url + "?utm_source=newsletter"
        assert event.context["page"]["id"] == view.context["page"]["id"]  # web_page context
        assert event.context["library"]["version"] == "js-4.10.1"
        assert event.context["ip"] == "127.0.0.1" and "Chrome" in event.context["userAgent"]
        assert event.context["screen"]["width"] > 0 and event.context["locale"]
        assert event.sent_at is not None and event.original_timestamp is not None
        assert abs(event.timestamp - event.received_at) < timedelta(seconds=10)
    assert (view.type, view.context["page"]["title"]) == (EventType.PAGE, "Snowplow page")
    assert view.context["campaign"]["source"] == "newsletter"
    assert ping.type is EventType.ENGAGEMENT
    assert set(ping.properties) == {"pp_mix", "pp_max", "pp_miy", "pp_may"}
    assert all(isinstance(v, int) for v in ping.properties.values())
    assert play.properties == {
        "category": "video",
        "action": "play",
        "label": "intro",
        "property": "hd",
        "value": 3.5,
    }
    assert click.properties == {"targetUrl": "https://docs.example/"}
    assert {"schema": USER_CONTEXT, "data": {"plan": "pro"}} in click.context["snowplow_contexts"]


def test_retry_get_and_server_anonymisation(page: Page, site: Site, live: LiveCollector) -> None:
    """A lost answer: the tracker sends the same events again and they are stored once. The
    registered app id, the GET emitter and SP-Anonymous work from a page as well."""
    lost: list[str] = []
    posted: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if route.request.method == "POST":
            posted.append(route.request.post_data or "")
        if lost or route.request.method != "POST":
            route.continue_()
            return
        route.fetch()  # the collector stores the batch ...
        lost.append(route.request.post_data or "")
        route.abort()  # ... but the page never hears back: the tracker will retry

    page.route(f"{live.url}{TP2}", lose_first_answer)
    retry = {"appId": APP_ID, "contexts": {"webPage": False}}
    get = retry | {"eventMethod": "get"}
    anonymous = retry | {"anonymousTracking": {"withServerAnonymisation": True}}
    collector = json.dumps(live.url)
    url = tracker_page(
        site,
        f"sp.newTracker('retry', {collector}, {json.dumps(retry)});"
        f"sp.newTracker('get', {collector}, {json.dumps(get)});"
        f"sp.newTracker('anon', {collector}, {json.dumps(anonymous)});"
        "sp.trackStructEvent({category: 'retry', action: 'first'}, ['retry']);"
        "sp.trackPageView({title: 'by GET'}, ['get']);"
        "sp.trackStructEvent({category: 'anon', action: 'anonymous'}, ['anon']);",
    )
    page.goto(url)
    page.wait_for_function("true")
    deadline = time.monotonic() + WAIT_SECONDS
    while not lost and time.monotonic() < deadline:
        # Not time.sleep: the sync API runs route handlers only inside its own calls.
        page.wait_for_timeout(50)
    assert lost, "the tracker sent nothing"
    page.evaluate("sp.trackStructEvent({category: 'retry', action: 'second'}, ['retry'])")

    def done(events: list[Event]) -> bool:
        page.evaluate("sp.flushBuffer()")  # once the lost request has failed, it is resent
        return {"first", "second", "anonymous"} <= {e.name for e in events} and any(
            e.context["library"]["namespace"] == "get" for e in events
        )

    events = [e for e in wait_for(live, done, "the retried batch") if e.name != "page_ping"]
    first = [e for e in events if e.name == "first"]
    assert len(first) == 1  # sent twice (the retry carries the same eid), stored once
    sends = [e["eid"] for body in posted for e in json.loads(body)["data"]]
    assert sends.count(first[0].message_id) == 2
    [by_get] = [e for e in events if e.context["library"]["namespace"] == "get"]
    assert (by_get.name, by_get.context["page"]["title"]) == ("page_view", "by GET")
    assert by_get.context["ip"] == "127.0.0.1"
    [anonymous_event] = [e for e in events if e.name == "anonymous"]
    assert anonymous_event.context["ip"] is None
    assert anonymous_event.context["snowplow"]["anonymous"] is True
    assert {e.product_id for e in events} == {live.product.id}
