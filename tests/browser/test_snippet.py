"""The browser snippet (static/sightline.js) in a real headless Chromium."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.support import (
    CaptureCollector,
    PageFactory,
    hide_page,
    navigate_like_a_spa,
    wait_until_delivered,
)

pytestmark = pytest.mark.browser

# Some of these assert that nothing (more) arrives: the snippet sends after 1 s, so
# waiting this long without a message means none was sent.
QUIET_SECONDS = 1.5

STUB = (
    "<script>window.sightline=window.sightline||function(){"
    "(window.sightline.q=window.sightline.q||[]).push(arguments)}</script>"
)


def paths(messages: list[dict[str, object]]) -> list[str]:
    return [m["context"]["page"]["path"] for m in messages]  # type: ignore[index]


def test_page_view_on_load(page: Page, make_page: PageFactory, collector: CaptureCollector) -> None:
    url = make_page("<p>hello</p>")
    page.goto(url)

    [view] = collector.wait_for(type="page")
    context = view["context"]
    assert context["page"]["url"] == url
    assert context["page"]["title"] == "Test page"
    assert context["library"] == {"name": "sightline.js", "version": "0.1.0"}
    assert context["sessionId"]
    assert context["timezone"]
    assert context["screen"]["width"] > 0 and context["viewport"]["width"] > 0
    assert view["anonymousId"] and view["messageId"] and view["timestamp"]
    [batch] = collector.batches()
    assert batch["body"]["sentAt"]
    assert batch["content_type"].startswith("text/plain")  # no CORS preflight
    assert batch["origin"] != collector.url  # the page is on another origin
    # the anonymous id is in a first-party cookie too
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["sl_aid"]["value"] == view["anonymousId"]
    assert cookies["sl_aid"]["sameSite"] == "Lax"


def test_spa_navigation_counts_each_view_once(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page("<p>app</p>"))
    collector.wait_for(type="page")
    base = page.evaluate("location.pathname")

    expected = navigate_like_a_spa(page, base)
    views = collector.wait_for(len(expected), type="page")
    time.sleep(QUIET_SECONDS)
    views = collector.messages(type="page")
    assert sorted(paths(views)) == sorted(expected)
    assert len({v["messageId"] for v in views}) == len(views)
    by_path = {v["context"]["page"]["url"]: v for v in views}
    b_view = next(v for url, v in by_path.items() if "/b?tab=2" in url)
    assert b_view["context"]["page"]["referrer"].endswith("/a")  # the view before it


def test_hash_routing_when_enabled(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page('<a id="go" href="#/settings">settings</a>', data_hash="true"))
    collector.wait_for(type="page")
    page.click("#go")  # hashchange (and popstate): one view
    views = collector.wait_for(2, type="page")
    time.sleep(QUIET_SECONDS)
    views = collector.messages(type="page")
    assert [v["context"]["page"]["hash"] for v in views] == ["", "#/settings"]


def test_clicks_on_links_and_tagged_elements(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    body = """
      <nav id="top">
        <a id="out" class="ext primary" href="https://example.com/pricing">  See
           pricing  </a>
        <a id="pdf" href="/files/report.pdf">Report</a>
      </nav>
      <div class="cta"><button data-sl-event="Signup Clicked" data-sl-prop-plan="pro"
        data-sl-prop-seats="5"><span id="inner">Sign up</span></button></div>
      <script>document.addEventListener('click', e => e.preventDefault())</script>
    """
    page.goto(make_page(body))
    collector.wait_for(type="page")
    page.click("#out")
    page.click("#pdf")
    page.click("#inner")  # inside the tagged button

    clicks = collector.wait_for(3, type="click")
    assert len(clicks) == 3
    out, pdf, signup = sorted(clicks, key=lambda m: m["timestamp"])
    assert out["event"] == "click"
    assert out["properties"] == {
        "tag": "a",
        "text": "See pricing",  # rendered text (innerText), trimmed
        "id": "out",
        "classes": "ext primary",
        "selector": "a#out",
        "href": "https://example.com/pricing",
        "outbound": True,
        "download": False,
    }
    assert pdf["properties"]["download"] is True and pdf["properties"]["outbound"] is False
    assert signup["event"] == "Signup Clicked"
    assert signup["properties"]["tag"] == "button"
    assert signup["properties"]["text"] == "Sign up"
    assert signup["properties"]["plan"] == "pro" and signup["properties"]["seats"] == "5"
    assert "href" not in signup["properties"]


def test_auto_click_off_keeps_only_tagged_elements(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    body = '<button id="plain">plain</button><a id="tagged" data-sl-event="Tagged">t</a>'
    page.goto(make_page(body, data_auto_click="false"))
    collector.wait_for(type="page")
    page.click("#plain")
    page.click("#tagged")
    collector.wait_for(type="click")
    time.sleep(QUIET_SECONDS)
    assert [m["event"] for m in collector.messages(type="click")] == ["Tagged"]


def test_identify_then_track(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page())
    [view] = collector.wait_for(type="page")
    page.evaluate("sightline.identify('user-42', {plan: 'pro'})")
    page.evaluate("sightline('track', 'Report Exported', {format: 'csv'})")

    [identify] = collector.wait_for(type="identify")
    [track] = collector.wait_for(type="track")
    assert identify["userId"] == "user-42" and identify["traits"] == {"plan": "pro"}
    assert track["userId"] == "user-42"
    assert track["event"] == "Report Exported" and track["properties"] == {"format": "csv"}
    assert view["anonymousId"] == identify["anonymousId"] == track["anonymousId"]
    assert view["context"]["sessionId"] == track["context"]["sessionId"]

    # kept across page loads until reset()
    page.reload()
    views = collector.wait_for(2, type="page")
    assert views[1]["userId"] == "user-42"
    assert views[1]["anonymousId"] == view["anonymousId"]
    page.evaluate("sightline.reset(); sightline.track('After Reset')")
    [after] = collector.wait_for(event="After Reset")
    assert "userId" not in after
    assert after["anonymousId"] != view["anonymousId"]


def test_group_and_alias(page: Page, make_page: PageFactory, collector: CaptureCollector) -> None:
    page.goto(make_page())
    page.evaluate("sightline.group('acme', {name: 'Acme'}); sightline.alias('user-7')")
    [group] = collector.wait_for(type="group")
    [alias] = collector.wait_for(type="alias")
    assert group["groupId"] == "acme" and group["traits"] == {"name": "Acme"}
    assert alias["userId"] == "user-7" and alias["previousId"] == alias["anonymousId"]


def test_engagement_when_the_page_is_left(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page('<div style="height: 4000px">tall</div>'))
    [view] = collector.wait_for(type="page")
    page.mouse.wheel(0, 1500)
    page.wait_for_function("scrollY > 1000")
    page.wait_for_timeout(300)
    page.goto("about:blank")  # pagehide: engagement, by sendBeacon or fetch keepalive

    [engagement] = collector.wait_for(type="engagement")
    props = engagement["properties"]
    assert "event" not in engagement  # the collector names it "engagement" (bytes)
    assert props["engaged_ms"] >= 300
    assert 30 <= props["max_scroll_pct"] <= 100
    assert engagement["context"]["page"]["url"] == view["context"]["page"]["url"]
    time.sleep(1)
    assert len(collector.messages(type="engagement")) == 1


def test_beacon_only_once_a_fetch_was_answered(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    """sendBeacon reports success even for a beacon the page's CSP drops, so the snippet
    trusts it only after a fetch from the page got an answer; before that, a page hidden
    at once sends by fetch keepalive."""
    kinds: list[str] = []
    page.on("request", lambda r: kinds.append(r.resource_type) if "/v1/batch" in r.url else None)
    page.goto(make_page('<div style="height: 3000px">tall</div>'))
    page.wait_for_function("window.sightline && sightline.v")
    page.wait_for_timeout(100)
    hide_page(page)  # hidden before the 1 s send timer: nothing answered yet
    collector.wait_for(type="page")
    wait_until_delivered(page)
    assert kinds == ["fetch"]

    page.evaluate(
        "delete document.hidden; document.dispatchEvent(new Event('visibilitychange'))"
    )  # visible again
    page.wait_for_timeout(200)
    hide_page(page)  # now a fetch has been answered: the engagement goes by beacon
    [_, engagement] = collector.wait_for(2, type="engagement")
    assert engagement["properties"]["engaged_ms"] >= 200
    wait_until_delivered(page)
    assert kinds == ["fetch", "ping"], kinds  # Chromium types a sendBeacon "ping"


def test_offline_events_arrive_once_back_online(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page())
    collector.wait_for(type="page")
    wait_until_delivered(page)
    context.set_offline(True)
    page.evaluate("sightline.track('While Offline')")
    page.wait_for_timeout(1500)  # the send timer fired while offline
    assert collector.messages(event="While Offline") == []

    context.set_offline(False)  # "online" event: the stored message goes
    [sent] = collector.wait_for(event="While Offline")
    time.sleep(QUIET_SECONDS)
    # once on the wire, not only once after deduplication
    assert [m for m in collector.deliveries() if m.get("event") == "While Offline"] == [sent]


def test_collector_down_retried_with_backoff(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    collector.set_down(True)
    try:
        page.goto(make_page())
        page.evaluate("sightline.track('During Outage')")
        deadline = time.monotonic() + 5
        while collector.capture.refused == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.capture.refused > 0
        assert collector.messages() == []
    finally:
        collector.set_down(False)
    views = collector.wait_for(type="page", timeout=8)
    tracks = collector.wait_for(event="During Outage", timeout=8)
    assert len(views) == 1 and len(tracks) == 1


def test_undelivered_events_are_sent_on_the_next_load(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    url = make_page()
    page.goto(url)
    collector.wait_for(type="page")
    wait_until_delivered(page)
    context.set_offline(True)
    page.evaluate("sightline.track('Left Offline')")
    page.wait_for_timeout(1200)
    page.close()  # gone while offline: the message waits in localStorage
    context.set_offline(False)
    # Not asserted here: Chromium may still deliver the page-hide beacon it queued
    # while offline. Either way the message arrives, and exactly once (same messageId).
    second = context.new_page()
    second.goto(url)
    [left] = collector.wait_for(event="Left Offline")
    assert left["type"] == "track"


@pytest.mark.parametrize(
    "init_script",
    [
        pytest.param(
            "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
            id="dnt",
        ),
        pytest.param(
            "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})",
            id="gpc",
        ),
    ],
)
def test_nothing_sent_with_dnt_or_gpc(
    context: BrowserContext,
    page: Page,
    make_page: PageFactory,
    collector: CaptureCollector,
    init_script: str,
) -> None:
    context.add_init_script(init_script)
    page.goto(make_page('<button id="b">b</button>'))
    page.evaluate("sightline.track('Should Not Arrive'); sightline.identify('u1')")
    page.click("#b")
    page.wait_for_timeout(QUIET_SECONDS * 1000)
    page.goto("about:blank")
    time.sleep(0.5)
    assert collector.messages() == []
    assert collector.pixels() == []
    assert [c["name"] for c in context.cookies()] == []  # no identifier stored either


def test_site_can_opt_out_of_honouring_dnt(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    page.goto(make_page(data_respect_dnt="false"))
    assert collector.wait_for(type="page")


def test_opt_out_stops_everything(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    url = make_page('<button id="b">b</button>')
    page.goto(url)
    collector.wait_for(type="page")
    page.evaluate("sightline.optOut(); sightline.track('After Opt Out')")
    page.click("#b")
    page.reload()
    page.wait_for_timeout(QUIET_SECONDS * 1000)
    page.goto("about:blank")
    time.sleep(0.5)
    assert [m["type"] for m in collector.messages()] == ["page"]

    page.goto(url)
    page.evaluate("sightline.optIn(); sightline.track('After Opt In')")
    assert collector.wait_for(event="After Opt In")


def test_stub_queue_is_replayed_before_the_first_page_view(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    calls = (
        "<script>sightline('identify', 'early-user');"
        "sightline('track', 'Early Event', {n: 1});</script>"
    )
    page.goto(make_page(stub=STUB + calls))
    [early] = collector.wait_for(event="Early Event")
    [view] = collector.wait_for(type="page")
    assert early["userId"] == "early-user" and early["properties"] == {"n": 1}
    assert view["userId"] == "early-user"  # identify() applied to the automatic page view
    assert early["context"]["page"]["url"] == view["context"]["page"]["url"]
    assert page.evaluate("typeof sightline.track") == "function"


def test_tag_twice_sends_once(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    url = make_page()
    page.goto(url)
    collector.wait_for(type="page")
    page.evaluate(
        """() => new Promise(done => {
            const s = document.createElement('script');
            s.src = document.querySelector('script[data-key]').src;
            s.dataset.key = document.querySelector('script[data-key]').dataset.key;
            s.onload = done;
            document.head.append(s);
        })"""
    )
    time.sleep(QUIET_SECONDS)
    assert len(collector.messages(type="page")) == 1


def test_session_rolls_over_after_30_minutes_idle(
    page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page())
    [view] = collector.wait_for(type="page")
    session = view["context"]["sessionId"]
    page.evaluate("sightline.track('Same Session')")
    # the last event was 31 minutes ago
    page.evaluate(
        "localStorage.sl_sid = localStorage.sl_sid.split('.')[0] + '.' + (Date.now() - 31 * 60e3)"
    )
    page.evaluate("sightline.track('New Session')")
    [same] = collector.wait_for(event="Same Session")
    [new] = collector.wait_for(event="New Session")
    assert same["context"]["sessionId"] == session
    assert new["context"]["sessionId"] != session
    assert new["anonymousId"] == view["anonymousId"]


def test_stored_queue_is_bounded(
    context: BrowserContext, page: Page, make_page: PageFactory, collector: CaptureCollector
) -> None:
    page.goto(make_page())
    collector.wait_for(type="page")
    wait_until_delivered(page)
    context.set_offline(True)
    page.evaluate(
        """for (let i = 0; i < 700; i++)
             localStorage['sl_b_1' + String(i).padStart(12, '0') + 'x'] = '{}';
           sightline.track('Newest')"""
    )
    page.wait_for_timeout(1300)  # the send timer ran (offline: it only trims the queue)
    stored = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('sl_b_'))")
    assert len(stored) == 500
    assert any(not key.startswith("sl_b_1000") for key in stored)  # the newest is kept
