"""The snippet, the pixel and an MV3 extension in a real Chromium, against the REAL collector.

Every assertion is on the store, after the batch worker ran (``LiveCollector``): the
page comes from the test site's origin, which the product allows, and goes through
CORS, the native dialect (or the pixel), Redis, the worker and the database. Every case
runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Error, Page, Playwright, Worker
from redis import Redis

from collector.snippet import SNIPPET_FILE, SnippetAsset
from sightline.model import EventType
from sightline.settings import Settings
from sightline.store.schema import aliases, user_attributes, users
from tests.browser.live import LiveCollector, extension_origin
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STATIC,
    WAIT_SECONDS,
    Message,
    PageFactory,
    Site,
    hide_page,
    navigate_like_a_spa,
    wait_until_delivered,
)
from tests.harness import REDIS_TIMEOUT
from tests.servers import RedisServer

pytestmark = pytest.mark.browser

QUIET_SECONDS = 1.5
"""The snippet sends 1 s after an event: this long without one stored means none was sent."""
EXTENSION_SOURCE = Path(__file__).parent / "extension"


@pytest.fixture(scope="session")
def live_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of the live collector's own, so pausing it (``set_down``) hangs nothing else."""
    server = RedisServer(tmp_path_factory.mktemp("live-redis"))
    server.start()
    yield server
    server.resume()
    server.stop()


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    """Where the extension test unpacks its extension (its id follows from this path)."""
    return (tmp_path / "extension").resolve()


@pytest.fixture
def redis_timeout() -> str:
    """The collector's SIGHTLINE_REDIS_TIMEOUT: the suite's generous one; the outage test
    parametrizes a short one."""
    return REDIS_TIMEOUT


@pytest.fixture
def collector(
    tmp_path: Path,
    database_url: str,
    live_redis: RedisServer,
    site: Site,
    extension_dir: Path,
    redis_timeout: str,
) -> Iterator[LiveCollector]:
    """The real collector, one product allowing the test site and the test extension."""
    client = Redis.from_url(live_redis.url)
    client.flushall()
    client.close()
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": live_redis.url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": redis_timeout,
        }
    )
    origins = (site.url, extension_origin(extension_dir))
    with LiveCollector(settings, live_redis, origins) as live:
        yield live


def paths(messages: list[Message]) -> list[str]:
    return [m["context"]["page"]["path"] for m in messages]


# --- the snippet -----------------------------------------------------------------------


def test_page_view_on_load(page: Page, make_page: PageFactory, collector: LiveCollector) -> None:
    url = make_page("<p>hello</p>")
    page.goto(url)

    [view] = collector.wait_for(type="page")
    stored = view["stored"]
    assert stored.dialect == "native" and stored.name == "page_view"
    assert view["context"]["page"]["url"] == url
    assert view["context"]["page"]["title"] == "Test page"
    assert view["context"]["library"] == {"name": "sightline.js", "version": "0.1.0"}
    assert stored.session_id == view["context"]["sessionId"]
    assert stored.sent_at is not None
    assert "HeadlessChrome" in view["context"]["userAgent"]  # from the request, by the dialect
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert stored.anonymous_id == cookies["sl_aid"]


def test_campaign_and_click_ids_on_every_event(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    """UTM parameters and ad click ids are context on every stored event: the snippet
    sends the page URL with each message and the worker parses it into
    ``context.campaign`` (Segment's names, plus click ids and the channel)."""
    query = "?utm_source=newsletter&utm_medium=email&utm_campaign=spring%20sale&gclid=Cj0K"
    page.goto(make_page('<button id="b">Buy</button>') + query)
    page.evaluate("sightline.track('Viewed Offer'); sightline.identify('buyer-1')")
    page.click("#b")
    page.evaluate("history.pushState({}, '', 'checkout')")  # a SPA view without the query
    wait_until_delivered(page)

    on_landing = collector.wait_for(2, type="page") + collector.messages(type="identify")
    on_landing += collector.messages(event="Viewed Offer") + collector.messages(type="click")
    landing = [m for m in on_landing if m["context"]["page"]["search"] == query]
    assert {m["type"] for m in landing} == {"page", "track", "identify", "click"}
    for message in landing:
        campaign = message["context"]["campaign"]
        assert campaign["source"] == "newsletter" and campaign["medium"] == "email"
        assert campaign["name"] == "spring sale"
        assert campaign["click_ids"] == {"gclid": "Cj0K"}
        assert campaign["channel"] == "email"  # utm_medium decides first
    [checkout] = [m for m in collector.messages(type="page") if m not in landing]
    assert "source" not in checkout["context"]["campaign"]
    assert checkout["context"]["campaign"]["channel"] == "internal"  # referred by the landing


def test_each_spa_navigation_stored_once(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    page.goto(make_page("<p>app</p>"))
    base = page.evaluate("location.pathname")

    expected = navigate_like_a_spa(page, base)
    wait_until_delivered(page)  # every view recorded has been taken by the collector
    views = collector.messages(type="page")
    assert sorted(paths(views)) == sorted(expected)
    assert len({v["messageId"] for v in views}) == len(views)


def test_link_and_tagged_clicks(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    body = """
      <a id="out" class="ext primary" href="https://example.com/pricing"> See pricing </a>
      <button data-sl-event="Signup Clicked" data-sl-prop-plan="pro" data-sl-prop-seats="5"
        ><span id="inner">Sign up</span></button>
      <script>document.addEventListener('click', e => e.preventDefault())</script>
    """
    page.goto(make_page(body))
    page.click("#out")
    page.click("#inner")  # inside the tagged button

    clicks = collector.wait_for(2, type="click")
    link, signup = sorted(clicks, key=lambda m: m["stored"].timestamp)
    assert {m["stored"].type for m in clicks} == {EventType.CLICK}
    assert link["event"] == "click"
    assert link["properties"] == {
        "tag": "a",
        "text": "See pricing",
        "id": "out",
        "classes": "ext primary",
        "selector": "a#out",
        "href": "https://example.com/pricing",
        "outbound": True,
        "download": False,
    }
    assert signup["event"] == "Signup Clicked"
    assert signup["properties"]["tag"] == "button"
    assert signup["properties"]["text"] == "Sign up"
    assert signup["properties"]["selector"] == "button"
    assert signup["properties"]["plan"] == "pro" and signup["properties"]["seats"] == "5"
    assert "href" not in signup["properties"]


def test_identify_then_track_and_the_user_profile(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    page.goto(make_page())
    page.evaluate("sightline.identify('user-42', {plan: 'pro', email: 'ada@example.com'})")
    page.evaluate("sightline('track', 'Report Exported', {format: 'csv'})")

    [view] = collector.wait_for(type="page")  # recorded before identify: anonymous
    [identify] = collector.wait_for(type="identify")
    [track] = collector.wait_for(type="track")
    assert "userId" not in view
    assert identify["userId"] == track["userId"] == "user-42"
    assert identify["traits"] == {"plan": "pro", "email": "ada@example.com"}
    assert track["event"] == "Report Exported" and track["properties"] == {"format": "csv"}
    assert view["anonymousId"] == identify["anonymousId"] == track["anonymousId"]
    assert view["stored"].session_id == track["stored"].session_id

    with collector.engine.connect() as conn:
        [user] = conn.execute(
            sa.select(users).where(users.c.product_id == collector.product.id)
        ).all()
        traits = dict(
            conn.execute(
                sa.select(user_attributes.c.name, user_attributes.c.value).where(
                    user_attributes.c.user_id == user.id
                )
            ).all()
        )
        linked = conn.execute(
            sa.select(aliases.c.alias, aliases.c.kind).where(aliases.c.user_id == user.id)
        ).all()
    # A page's (write key's) e-mail stays a trait; the user's e-mail is server-only.
    assert user.external_id == "user-42" and user.email is None
    assert (traits["plan"], traits["email"]) == ("pro", "ada@example.com")
    # the visitor's anonymous id now leads to the user: their earlier page view is theirs
    assert (view["anonymousId"], "anonymous") in [tuple(row) for row in linked]


def test_engagement_when_the_page_is_hidden(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    page.goto(make_page('<div style="height: 4000px">tall</div>'))
    page.mouse.wheel(0, 1500)
    page.wait_for_function("scrollY > 1000")
    page.wait_for_timeout(300)
    page.goto("about:blank")  # pagehide: engagement, by sendBeacon or fetch keepalive

    [engagement] = collector.wait_for(type="engagement")
    [view] = collector.wait_for(type="page")
    props = engagement["properties"]
    assert engagement["event"] == "engagement"
    assert props["engaged_ms"] >= 300
    assert 30 <= props["max_scroll_pct"] <= 100
    assert engagement["context"]["page"]["url"] == view["context"]["page"]["url"]
    assert engagement["anonymousId"] == view["anonymousId"]


def test_offline_events_stored_once_back_online(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    page.goto(make_page())
    collector.wait_for(type="page")
    wait_until_delivered(page)
    context.set_offline(True)
    page.evaluate("sightline.track('While Offline')")
    page.wait_for_timeout(1200)  # the send timer fired while offline
    assert collector.messages(event="While Offline") == []

    context.set_offline(False)  # "online": the stored message goes
    wait_until_delivered(page)
    assert len(collector.messages(event="While Offline")) == 1


@pytest.mark.parametrize("redis_timeout", ["0.5"])  # an outage test: a short timeout
def test_collector_answering_503_then_recovering_stores_once(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    collector.set_down(True)  # Redis hangs: the collector answers 503 + Retry-After
    try:
        with page.expect_response(
            lambda r: r.url.endswith("/v1/batch") and r.status == 503,
            timeout=WAIT_SECONDS * 1000,
        ) as refused:
            page.goto(make_page())
            page.evaluate("sightline.track('During Outage')")
        assert refused.value.headers["retry-after"] == "1"
        assert collector.messages() == []
    finally:
        collector.set_down(False)

    page.wait_for_function(  # the retry is due after the 1 s backoff, then 2 s, ...
        "!Object.keys(localStorage).some(k => k.startsWith('sl_b_'))", timeout=10_000
    )
    # the 503'd request may have reached Redis after all: stored once, deduplicated
    assert len(collector.messages(type="page")) == 1
    assert len(collector.messages(event="During Outage")) == 1


def test_nothing_stored_with_dnt(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    page.goto(make_page('<button id="b">b</button>'))
    page.evaluate("sightline.track('Should Not Arrive'); sightline.identify('u1')")
    page.click("#b")
    page.wait_for_timeout(QUIET_SECONDS * 1000)
    page.goto("about:blank")
    time.sleep(0.5)
    assert collector.queued() == 0
    assert collector.messages() == []
    assert context.cookies() == []


def test_origin_not_allowed_is_refused(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    # The same test site under another name is another origin, one the product does
    # not list (it lists http://127.0.0.1:<port>).
    url = make_page().replace("://127.0.0.1:", "://localhost:")
    pixels: list[str] = []
    page.on("request", lambda r: pixels.append(r.url) if "/p.gif?" in r.url else None)
    # The collector refuses it (403) with no CORS grant, so to the page the fetch
    # failed without an answer (Playwright: "requestfailed", not "response").
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/v1/batch")) as failed:
        page.goto(url)
    origin = url.split("/t/")[0]
    body = failed.value.post_data
    assert body is not None
    refused = httpx.post(
        collector.url + "/v1/batch",
        content=body,
        headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"},
    )  # the same request from outside a browser shows the answer the page did not see
    assert refused.status_code == 403 and "not allowed" in refused.text
    assert not [h for h in refused.headers if h.lower().startswith("access-control-")]
    # So the snippet tries the pixel, which the collector refuses by the image's Referer;
    # the image still loads, so the snippet drops those messages for good.
    wait_until_delivered(page)
    assert pixels and all("/p.gif?d=" in p for p in pixels)
    preflighted = """fetch(%s, {method: 'POST', body: '{}',
        headers: {'Content-Type': 'application/json'}}).then(() => 'sent', () => 'blocked')"""
    assert page.evaluate(preflighted % json.dumps(collector.url + "/v1/batch")) == "blocked"
    time.sleep(QUIET_SECONDS)
    assert collector.queued() == 0
    assert collector.messages() == []


def test_pixel_when_the_page_csp_blocks_fetch_and_beacon(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    """A site whose Content-Security-Policy has no connect-src for the collector: fetch
    and sendBeacon are blocked (sendBeacon even says it sent), images are not."""
    csp = """<meta http-equiv="Content-Security-Policy" content="connect-src 'none'">"""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.startswith(collector.url) else None)
    page.goto(make_page('<div style="height: 3000px">tall</div>', head=csp))
    [view] = collector.wait_for(type="page")
    page.evaluate("sightline.track('Behind A CSP', {plan: 'pro'})")
    [tracked] = collector.wait_for(event="Behind A CSP")
    wait_until_delivered(page)

    assert view["stored"].dialect == tracked["stored"].dialect == "pixel"
    assert tracked["properties"] == {"plan": "pro"}
    assert tracked["context"]["page"]["url"] == view["context"]["page"]["url"]
    assert tracked["anonymousId"] == view["anonymousId"]
    assert any("/p.gif?d=" in url for url in sent)
    assert not any(url.endswith("/v1/batch") for url in sent)  # blocked before the network

    page.mouse.wheel(0, 1000)
    page.wait_for_timeout(300)
    hide_page(page)  # engagement, by the pixel (a beacon would vanish behind the CSP)
    [engagement] = collector.wait_for(type="engagement")
    assert engagement["stored"].dialect == "pixel"
    wait_until_delivered(page)
    time.sleep(QUIET_SECONDS)
    assert len(collector.messages(type="page")) == 1
    assert len(collector.messages(event="Behind A CSP")) == 1


def test_tag_with_subresource_integrity(page: Page, site: Site, collector: LiveCollector) -> None:
    """``<script crossorigin integrity=...>`` from an allowed origin: one CORS grant."""
    body = SnippetAsset.load(SNIPPET_FILE).body
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    url = site.add(
        f'<!doctype html><title>SRI</title><script defer src="{collector.url}/s.js" '
        f'crossorigin="anonymous" integrity="{integrity}" '
        f'data-key="{collector.write_key}"></script>'
    )
    page.goto(url)
    assert collector.wait_for(type="page")


# --- the pixel -------------------------------------------------------------------------


def test_pixel_in_an_image_tag(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    """An e-mail open as docs/browser.md shows it: a plain image, no script, no CORS; the
    message id makes a second open of the same mail count once."""
    query = urlencode(
        {"k": collector.write_key, "t": "track", "e": "Email Opened", "uid": "reader-1",
         "m": "welcome-reader-1"}
    )  # fmt: skip
    html = f'<img id="px" src="{collector.url}/p.gif?{query}" width="1" height="1" alt="">'
    hits: list[int] = []
    page.on("response", lambda r: hits.append(r.status) if "/p.gif?" in r.url else None)
    page.goto(make_page(html))
    page.wait_for_function("document.getElementById('px').naturalWidth === 1")
    page.reload()  # opened again: no-store, so the image is requested again
    page.wait_for_function("document.getElementById('px').naturalWidth === 1")

    assert hits == [200, 200]
    [opened] = collector.wait_for(event="Email Opened")
    assert opened["type"] == "track" and opened["userId"] == "reader-1"
    assert opened["messageId"] == "welcome-reader-1"
    assert opened["stored"].dialect == "pixel"


# --- a Manifest V3 extension -------------------------------------------------------------


@pytest.fixture
def extension_worker(
    playwright: Playwright, tmp_path: Path, extension_dir: Path, collector: LiveCollector
) -> Iterator[Worker]:
    """The test extension, unpacked and loaded, sending to the live collector."""
    shutil.copytree(EXTENSION_SOURCE, extension_dir)
    shutil.copy(STATIC / "sightline-ext.js", extension_dir / "sightline-ext.js")
    (extension_dir / "config.js").write_text(
        f"export const API_HOST = {json.dumps(collector.url)};\n"
        f"export const WRITE_KEY = {json.dumps(collector.write_key)};\n"
    )
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--disable-extensions-except={extension_dir}",
            f"--load-extension={extension_dir}",
        ],
    )
    try:
        context.set_default_timeout(WAIT_SECONDS * 1000)
        workers = context.service_workers
        yield workers[0] if workers else context.wait_for_event("serviceworker")
    finally:
        context.close()


def test_extension_install_and_custom_event(
    extension_worker: Worker, extension_dir: Path, collector: LiveCollector
) -> None:
    origin = extension_origin(extension_dir)
    assert extension_worker.url.startswith(origin + "/")  # the origin the product allows
    extension_id = origin.removeprefix("chrome-extension://")

    [installed] = collector.wait_for(event="Extension Installed")
    extension_worker.evaluate("self.sightlineTest.track('Custom Event', {source: 'test'})")
    [custom] = collector.wait_for(event="Custom Event")

    for message in (installed, custom):
        assert message["type"] == EventType.EXTENSION
        assert message["context"]["extension"] == {"id": extension_id, "version": "1.2.3"}
        assert message["context"]["library"]["name"] == "sightline-ext.js"
    assert custom["properties"] == {"source": "test"}
    assert custom["anonymousId"] == installed["anonymousId"]
    assert custom["stored"].session_id == installed["stored"].session_id


def test_extension_uninstall_recorded_by_the_pixel(
    extension_worker: Worker, extension_dir: Path, collector: LiveCollector
) -> None:
    [installed] = collector.wait_for(event="Extension Installed")
    with contextlib.suppress(Error):  # the worker goes away with its extension
        extension_worker.evaluate("chrome.management.uninstallSelf()")
    [gone] = collector.wait_for(event="Extension Uninstalled")
    assert gone["stored"].dialect == "pixel" and gone["type"] == EventType.EXTENSION
    assert gone["anonymousId"] == installed["anonymousId"]
    extension_id = extension_origin(extension_dir).removeprefix("chrome-extension://")
    assert gone["context"]["extension"] == {"id": extension_id, "version": "1.2.3"}
