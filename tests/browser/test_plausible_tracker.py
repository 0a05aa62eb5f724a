"""Plausible's own trackers from npm, in Chromium, against the real collector (SQLite).

- ``plausible-tracker`` 0.3.9 (the package issue 11 names; ES module build, XHR with a
  ``text/plain`` body): ``enableAutoPageviews`` (the first view and a ``pushState``),
  ``trackEvent`` with props, ``trackPageview`` with a referrer;
- ``@plausible-analytics/tracker`` 0.4.6 (Plausible's current package, ``fetch`` with
  ``keepalive``): the automatic page view, ``track`` with props, revenue and
  ``interactive: false``, and the engagement it sends when the page is hidden.

What a site changes: ``apiHost`` (0.3.x) or ``endpoint`` (0.4.x) to the collector, and
``domain`` to a domain the product registered (``sightline products ids ID add plausible
DOMAIN``) or the product's write key. The pages say ``trackLocalhost`` /
``captureOnLocalhost`` because the test site is 127.0.0.1, and 0.4.x also needs
``window.__plausible`` because it skips browsers driven by automation
(``navigator.webdriver``). Each test reads back what the store holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Response

from sightline.model import Event, EventType
from sightline.store.products import add_identifier
from tests.browser.live import LiveCollector
from tests.browser.support import Message
from tests.browser.vendor import NODE_MODULES, VendorSite, local_only, module_collector, serving
from tests.servers import RedisServer

pytestmark = pytest.mark.browser

PACKAGES = {
    "plausible-tracker": ("0.3.9", NODE_MODULES / "plausible-tracker", "build/module"),
    "plausible-analytics": (
        "0.4.6",
        NODE_MODULES / "@plausible-analytics" / "tracker",
        ".",
    ),
}
DOMAIN = "shop.example"


@pytest.fixture(scope="module")
def site() -> Iterator[VendorSite]:
    for name, (version, folder, _) in PACKAGES.items():
        if not (folder / "package.json").is_file():
            pytest.skip(f"{name} is not in node_modules (npm ci)")
        assert json.loads((folder / "package.json").read_text())["version"] == version
    folders = {name: folder / sub for name, (_, folder, sub) in PACKAGES.items()}
    with serving(VendorSite(folders)) as site:
        yield site


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    sqlite_template: Path,
    site: VendorSite,
) -> Iterator[LiveCollector]:
    workdir = tmp_path_factory.mktemp("plausible-live")
    with module_collector(workdir, redis_server, sqlite_template, (site.url,)) as collector:
        with collector.engine.begin() as conn:
            add_identifier(conn, collector.product.id, "plausible", DOMAIN)
        yield collector


LEGACY_PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Shop</title></head>
<body>shop<script type="module">
import Plausible from '/vendor/plausible-tracker/index';
const plausible = Plausible({domain: %(domain)s, apiHost: %(api)s, trackLocalhost: true});
const sent = (run) => new Promise((callback) => run(callback));
window.plausible = plausible;
window.sent = sent;
plausible.enableAutoPageviews();
window.ready = true;
</script></body></html>"""


def test_plausible_tracker(live: LiveCollector, site: VendorSite, context: BrowserContext) -> None:
    offsite = local_only(context)
    url = site.add(LEGACY_PAGE % {"domain": json.dumps(DOMAIN), "api": json.dumps(live.url)})
    page = context.new_page()
    with page.expect_response(is_event):  # one at a time: stored in the order sent
        page.goto(url)
    with page.expect_response(is_event):
        page.evaluate("history.pushState({}, '', 'pricing?plan=pro')")
    page.evaluate(
        """() => window.sent((callback) => window.plausible.trackEvent(
            'Signup', {callback, props: {plan: 'pro', seats: 3}}))"""
    )
    page.evaluate(
        """() => window.sent((callback) => window.plausible.trackPageview(
            {url: 'https://shop.example/landing?utm_source=mail', referrer: 'https://news.example/'},
            {callback}))"""
    )
    stored = live.wait_for(4)
    assert len(stored) == 4, stored
    first, pushed, signup, manual = (m["stored"] for m in stored)
    assert [e.type for e in (first, pushed, manual)] == [EventType.PAGE] * 3
    assert {e.dialect for e in stored_events(stored)} == {"plausible"}
    assert first.context["page"]["url"] == url
    assert pushed.context["page"]["url"] == url.rsplit("/", 1)[0] + "/pricing?plan=pro"
    assert pushed.context["page"]["search"] == "?plan=pro"
    assert (signup.type, signup.name, signup.properties) == (
        EventType.TRACK,
        "Signup",
        {"plan": "pro", "seats": 3},
    )
    assert manual.context["page"]["referrer"] == "https://news.example/"
    assert manual.context["campaign"]["source"] == "mail"
    assert first.context["screen"]["width"] > 0
    # No cookie, no storage: one visitor by address and browser.
    assert len({e.anonymous_id for e in stored_events(stored)}) == 1
    assert first.context["userAgent"] == page.evaluate("navigator.userAgent")
    assert offsite == []


CURRENT_PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Checkout</title></head>
<body style="height: 3000px">checkout<script type="module">
import { init, track } from '/vendor/plausible-analytics/plausible.js';
window.__plausible = true;
init({domain: %(domain)s, endpoint: %(endpoint)s, captureOnLocalhost: true, logging: false});
window.track = track;
window.ready = true;
</script></body></html>"""


def test_plausible_analytics_tracker(
    live: LiveCollector, site: VendorSite, context: BrowserContext
) -> None:
    offsite = local_only(context)
    endpoint = json.dumps(live.url + "/api/event")
    url = site.add(CURRENT_PAGE % {"domain": json.dumps(live.write_key), "endpoint": endpoint})
    before = len(live.messages())
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.ready === true")
    status = page.evaluate(
        """() => new Promise((callback) => window.track('Purchase', {callback,
            props: {plan: 'team'}, revenue: {amount: 15.99, currency: 'EUR'},
            interactive: false}))"""
    )
    assert status == {"status": 202}
    page.evaluate("window.scrollTo(0, 1500)")
    with page.expect_response(is_engagement):  # sent when the page is hidden
        page.evaluate(HIDE)
    stored = stored_events(live.wait_for(before + 3))[before:]
    by_type = {e.type: e for e in stored}
    assert set(by_type) == {EventType.PAGE, EventType.TRACK, EventType.ENGAGEMENT}, stored
    view, purchase, engagement = (
        by_type[EventType.PAGE],
        by_type[EventType.TRACK],
        by_type[EventType.ENGAGEMENT],
    )
    assert view.context["page"]["url"] == url
    assert (purchase.name, purchase.properties) == (
        "Purchase",
        {"plan": "team", "revenue": 15.99, "currency": "EUR"},
    )
    assert purchase.context["interactive"] is False
    assert engagement.name == "engagement"
    assert engagement.properties["engaged_ms"] >= 0
    assert 0 < engagement.properties["max_scroll_pct"] <= 100
    assert len({e.anonymous_id for e in stored}) == 1
    assert offsite == []


HIDE = (
    "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
    "document.dispatchEvent(new Event('visibilitychange'))"
)


def is_event(response: Response) -> bool:
    return response.url.endswith("/api/event")


def is_engagement(response: Response) -> bool:
    return response.url.endswith("/api/event") and '"n":"engagement"' in (
        response.request.post_data or ""
    )


def stored_events(messages: list[Message]) -> list[Event]:
    return [m["stored"] for m in messages]
