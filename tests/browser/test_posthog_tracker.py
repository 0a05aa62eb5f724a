"""posthog-js (npm, from node_modules) in Chromium against the REAL collector.

The page comes from the test site's origin, which the product allows, and loads
posthog-js's ``array.js`` build with ``api_host`` = the collector. The first test runs
with flags and remote config off (``advanced_disable_flags``), autocapture off and
in-memory persistence; the second with the defaults posthog-js ships (remote config
from ``/array/<token>/config.js``, which names ``/i/v0/e/`` as the capture endpoint,
``/flags``) and autocapture on, for a click. Every assertion is on the store after the
worker ran. One collector (SQLite) serves the whole module.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response
from redis import Redis

from sightline.model import Event, EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from tests.browser.live import LiveCollector
from tests.browser.support import ROOT, WAIT_SECONDS, Site
from tests.dialects.posthog_support import account, alias_owners, profile
from tests.harness import REDIS_TIMEOUT
from tests.servers import RedisServer

pytestmark = pytest.mark.browser

PACKAGE = ROOT / "node_modules" / "posthog-js"
TOKEN = "phc_BrowserTestProjectToken0001"
"""A PostHog project token the product registered: pages keep the token they have."""


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    redis_server: RedisServer,
    site: Site,
) -> Iterator[LiveCollector]:
    workdir = tmp_path_factory.mktemp("posthog")
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
            add_identifier(conn, collector.product.id, "posthog", TOKEN)
        yield collector


def posthog_page(site: Site, token: str, options: dict[str, Any], body: str = "") -> str:
    """A page of the test site that loads posthog-js and calls ``posthog.init``."""
    library = (PACKAGE / "dist" / "array.js").read_text(encoding="utf-8")
    return site.add(
        "<!doctype html><html><head><meta charset=utf-8><title>PostHog page</title>"
        f"<script>{library}</script>"
        f"<script>posthog.init({json.dumps(token)}, {json.dumps(options)});</script>"
        f"</head><body>{body}</body></html>"
    )


def base_options(live: LiveCollector) -> dict[str, Any]:
    return {
        "api_host": live.url,
        "persistence": "memory",
        "disable_session_recording": True,
        "disable_surveys": True,
        "capture_pageview": True,
        "opt_out_useragent_filter": True,  # headless Chromium's agent looks like a bot
        "request_queue_config": {"flush_interval_ms": 100},
    }


def wait_for(live: LiveCollector, check: Callable[[list[Event]], bool], what: str) -> list[Event]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        events = [e for e in live.events() if e.dialect == "posthog"]
        if check(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"not stored in time: {what}; stored {events}")
        time.sleep(0.1)


def answers(page: Page, live: LiveCollector) -> list[tuple[str, int]]:
    """Every answer the collector gave the page: (path and query, status)."""
    seen: list[tuple[str, int]] = []

    def record(response: Response) -> None:
        if response.url.startswith(live.url):
            seen.append((response.url.removeprefix(live.url), response.status))

    page.on("response", record)
    return seen


def test_capture_identify_group_alias_and_profile(
    page: Page, site: Site, live: LiveCollector
) -> None:
    assert json.loads((PACKAGE / "package.json").read_text())["version"] == "1.449.2"
    options = {**base_options(live), "autocapture": False, "advanced_disable_flags": True}
    seen = answers(page, live)
    page.goto(
        posthog_page(site, live.write_key, options) + "?utm_source=newsletter&utm_medium=email"
    )
    device, session = page.evaluate("[posthog.get_distinct_id(), posthog.get_session_id()]")
    page.evaluate("posthog.capture('Clicked Buy', {color: 'red'})")
    wait_for(live, lambda es: any(e.name == "Clicked Buy" for e in es), "the anonymous event")
    page.evaluate(
        "posthog.identify('user-42', {email: 'ann@example.com', plan: 'free'}, {first: 'y'});"
        "posthog.group('company', 'acme', {name: 'Acme'});"
        "posthog.capture('After Group');"
        "posthog.alias('alt-42');"
        "posthog.setPersonProperties({plan: 'pro'}, {first: 'z'});"
    )
    wait_for(live, lambda es: sum(e.name == "identify" for e in es) >= 2, "the profile updates")
    page.goto("about:blank")  # $pageleave
    events = wait_for(live, lambda es: any(e.name == "engagement" for e in es), "the page leave")

    by_name = {e.name: e for e in events}
    view, clicked, after = by_name["page_view"], by_name["Clicked Buy"], by_name["After Group"]
    assert view.type is EventType.PAGE
    assert view.context["page"]["title"] == "PostHog page"
    assert view.context["page"]["search"] == "?utm_source=newsletter&utm_medium=email"
    assert view.context["campaign"]["source"] == "newsletter"
    assert view.context["library"] == {"name": "web", "version": "1.449.2"}
    assert view.context["userAgent"] == page.evaluate("navigator.userAgent")
    assert (view.anonymous_id, clicked.anonymous_id) == (device, device)
    assert clicked.properties["color"] == "red"
    assert (view.session_id, clicked.session_id) == (session, session)  # posthog-js's own
    assert (after.user_id, after.anonymous_id, after.account_id) == ("user-42", device, "acme")
    assert by_name["group"].type is EventType.GROUP
    assert by_name["engagement"].type is EventType.ENGAGEMENT
    assert len({e.message_id for e in events}) == len(events)
    user = profile(live.engine, live.product.id, "user-42")
    # A page's (write key's) e-mail stays an attribute; the user's e-mail is server-only.
    assert (user["email"], user["account"]) == (None, "acme")
    # posthog-js adds its own person properties ($initial_*, $current_url ...) to ours
    assert {k: user["attributes"][k] for k in ("email", "plan", "first")} == {
        "email": "ann@example.com",
        "plan": "pro",
        "first": "y",  # $set_once does not overwrite
    }
    assert user["attributes"]["$initial_utm_source"] == "newsletter"
    assert alias_owners(live.engine, live.product.id) == {device: "user-42", "alt-42": "user-42"}
    assert account(live.engine, live.product.id, "acme")["name"] == "Acme"
    capture = [(path, status) for path, status in seen if path.startswith("/e/")]
    assert capture and all(status == 200 for _, status in capture), seen
    assert not any(path.startswith(("/flags", "/decide", "/array")) for path, _ in seen)


def test_remote_config_flags_and_an_autocaptured_click(
    page: Page, site: Site, live: LiveCollector
) -> None:
    """posthog-js's defaults: remote config, then ``/i/v0/e/`` as it says; a registered token."""
    options = {**base_options(live), "autocapture": True}
    seen = answers(page, live)
    page.goto(posthog_page(site, TOKEN, options, body="<button id=buy>Buy now</button>"))
    page.wait_for_function("posthog.__loaded")
    page.evaluate("posthog.reloadFeatureFlags()")
    page.wait_for_function("posthog.featureFlags.hasLoadedFlags")
    assert page.evaluate("posthog.analyticsDefaultEndpoint") == "/i/v0/e/"  # the config's
    assert page.evaluate("posthog.isFeatureEnabled('anything')") in (False, None)
    page.click("#buy")
    events = wait_for(live, lambda es: any(e.type is EventType.CLICK for e in es), "the click")
    click = next(e for e in events if e.type is EventType.CLICK)
    assert click.name == "click"
    assert click.properties["$event_type"] == "click"
    assert "Buy now" in json.dumps(click.properties)
    assert click.product_id == live.product.id
    for _ in range(40):  # the store may be ahead of the page's response event
        if any(p.startswith("/i/v0/e/") for p, _ in seen):
            break
        page.wait_for_timeout(50)
    statuses = dict(seen)
    assert statuses.get(f"/array/{TOKEN}/config.js") == 200, seen
    assert any(p.startswith("/flags/") and s == 200 for p, s in seen), seen
    assert any(p.startswith("/i/v0/e/") and s == 200 for p, s in seen), seen
    assert all(s < 400 for _, s in seen), seen
