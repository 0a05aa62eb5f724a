"""@segment/analytics-next in Chromium, loaded from node_modules, against a real collector.

What a user changes: the settings it would fetch from Segment's CDN are given inline
(``cdnSettings``), with the ``Segment.io`` integration's ``apiHost`` set to the
collector's host and ``/v1`` and ``protocol`` to its scheme; ``cdnURL`` points where its
lazily loaded chunks are served. It posts to the short paths ``/v1/t|p|i|g|a`` (``/v1/b``
with ``deliveryStrategy: batching``) as ``text/plain`` JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from tests.browser.live import LiveCollector
from tests.clients.browser.conftest import NODE_MODULES, Offline, Site
from tests.clients.scenario import (
    GROUP_TRAITS,
    PAGE_PROPERTIES,
    PROPERTIES,
    TIMESTAMP,
    TRAITS,
    Script,
    check_stored,
)

pytestmark = pytest.mark.browser
VERSION = "1.84.3"


def page_html(site: Site, live: LiveCollector, batching: bool) -> str:
    host = live.url.removeprefix("http://")
    segment_io: dict[str, Any] = {
        "apiKey": live.write_key,
        "apiHost": f"{host}/v1",
        "protocol": "http",
    }
    if batching:
        segment_io["deliveryStrategy"] = {
            "strategy": "batching",
            "config": {"size": 50, "timeout": 300},
        }
    settings = {
        "writeKey": live.write_key,
        "cdnURL": site.url,
        "cdnSettings": {"integrations": {"Segment.io": segment_io}},
    }
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Shop</title>"
        f'<script src="{site.url}/vendor/analytics-next/index.js"></script>'
        "<script>window.analytics = AnalyticsNext.AnalyticsBrowser.load("
        f"{json.dumps(settings)});</script></head><body>shop</body></html>"
    )


SCRIPT = """async ([s, traits, props, pageProps, groupTraits, timestamp]) => {
  const a = window.analytics;
  await a.identify(s.user, traits);
  for (let i = 0; i < 2; i++) {
    const options = {timestamp: new Date(timestamp), messageId: s.messageId};
    await a.track('Order Completed', props, options);
  }
  await a.page('Pricing', pageProps);
  await a.group(s.group, groupTraits);
  await a.alias(s.user, s.previous);
  const [instance] = await a;
  return instance.user().anonymousId();
}"""


@pytest.mark.parametrize("batching", [False, True], ids=["standard", "batching"])
def test_analytics_next(
    live: LiveCollector, site: Site, context: BrowserContext, offline: Offline, batching: bool
) -> None:
    package = NODE_MODULES / "@segment" / "analytics-next" / "package.json"
    assert json.loads(package.read_text())["version"] == VERSION
    script = Script(f"ajs-next-{'batch' if batching else 'std'}")
    page = context.new_page()
    paths: list[str] = []
    page.on("request", lambda r: paths.append(r.url) if r.url.startswith(live.url) else None)
    page.goto(site.add(page_html(site, live, batching)))
    anonymous_id = page.evaluate(
        SCRIPT,
        [
            {
                "user": script.user_id,
                "messageId": script.message_id,
                "group": script.group_id,
                "previous": script.previous_id,
            },
            TRAITS,
            PROPERTIES,
            PAGE_PROPERTIES,
            GROUP_TRAITS,
            TIMESTAMP.isoformat(),
        ],
    )
    stored = check_stored(
        live,
        script,
        screen=False,
        anonymous_id=anonymous_id,
        pause=lambda: page.wait_for_timeout(100),  # Playwright serves routed requests
    )
    assert offline.offsite == []
    used = {p.removeprefix(live.url) for p in paths}
    assert used <= ({"/v1/b"} if batching else {"/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/a"})
    assert stored["track"].context["library"]["name"] == "analytics.js"
    assert stored["page"].context["page"]["title"] == "Shop"
