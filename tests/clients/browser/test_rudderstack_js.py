"""@rudderstack/analytics-js (v3) in Chromium, loaded from node_modules, against a real
collector.

What a user changes: ``load(writeKey, <collector base URL>, options)`` with the source
configuration given inline (``getSourceConfig``, so its control plane is never asked)
and ``pluginsSDKBaseURL`` / ``destSDKBaseURL`` pointed at the site (its "bundled" build
carries its plugins; nothing is fetched). Anonymous events carry ``"userId": ""``;
identify traits travel in ``context.traits`` only.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Request

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
VERSION = "3.34.1"
TYPES = ("track", "identify", "page", "group", "alias")
PATHS = {"batching": {"/v1/batch"}, "beacon": {"/beacon/v1/batch"}}


def source_config(write_key: str) -> dict[str, Any]:
    return {
        "source": {
            "id": "sightline-test-source",
            "name": "Sightline test",
            "writeKey": write_key,
            "workspaceId": "sightline",
            "enabled": True,
            "config": {
                "statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}
            },
            "destinations": [],
        }
    }


def page_html(site: Site, live: LiveCollector, mode: str) -> str:
    options: dict[str, Any] = {
        "pluginsSDKBaseURL": f"{site.url}/none/plugins",
        "destSDKBaseURL": f"{site.url}/none/destinations",
        "polyfillIfRequired": False,
        "logLevel": "ERROR",
    }
    if mode == "beacon":  # navigator.sendBeacon to /beacon/v1/batch?writeKey=
        options["useBeacon"] = True
        options["beaconQueueOptions"] = {"flushQueueInterval": 300}
    if mode == "batching":
        options["queueOptions"] = {"batch": {"enabled": True, "maxItems": 50, "flushInterval": 300}}
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Shop</title>"
        f'<script src="{site.url}/vendor/rudderstack/index.js"></script>'
        "<script>"
        "const ra = new rudderanalytics.RudderAnalytics();"
        f"const options = {json.dumps(options)};"
        f"options.getSourceConfig = () => ({json.dumps(source_config(live.write_key))});"
        f"ra.load({json.dumps(live.write_key)}, {json.dumps(live.url)}, options);"
        "window.ra = ra;"
        "</script></head><body>shop</body></html>"
    )


SCRIPT = """async ([s, traits, props, pageProps, groupTraits, timestamp]) => {
  const ra = window.ra;
  await new Promise((resolve) => ra.ready(resolve));
  ra.track('Anonymous Visit', {step: 1});  // "userId": "" on the wire
  const anonymousId = ra.getAnonymousId();
  ra.identify(s.user, traits);
  ra.track('Order Completed', props, {originalTimestamp: timestamp});
  ra.page('Pricing', pageProps);
  ra.group(s.group, groupTraits);
  ra.alias(s.user, s.previous);
  return anonymousId;
}"""


@pytest.mark.parametrize("mode", ["single", "batching", "beacon"])
def test_rudderstack_analytics_js(
    live: LiveCollector, site: Site, context: BrowserContext, offline: Offline, mode: str
) -> None:
    package = NODE_MODULES / "@rudderstack" / "analytics-js" / "package.json"
    assert json.loads(package.read_text())["version"] == VERSION
    script = Script(f"rudder-js-{mode}")
    page = context.new_page()
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.startswith(live.url) else None)
    page.goto(site.add(page_html(site, live, mode)))
    anonymous_id = page.evaluate(
        SCRIPT,
        [
            {
                "user": script.user_id,
                "group": script.group_id,
                "previous": script.previous_id,
            },
            TRAITS,
            PROPERTIES,
            PAGE_PROPERTIES,
            GROUP_TRAITS,
            TIMESTAMP.isoformat().replace("+00:00", "Z"),
        ],
    )
    pause = lambda: page.wait_for_timeout(100)  # noqa: E731 - Playwright serves routed requests
    stored = check_stored(
        live,
        script,
        screen=False,
        anonymous_id=anonymous_id,
        pause=pause,
        anonymous_events=("Anonymous Visit",),
        own_message_id=False,
    )
    assert offline.offsite == []
    paths = {urlsplit(r.url).path for r in sent}
    assert paths == PATHS.get(mode, {f"/v1/{t}" for t in TYPES})
    identify = stored["identify"]
    assert identify.context["traits"]["email"] == TRAITS["email"]  # where Rudder puts them
    assert stored["track"].context["library"]["name"] == "RudderLabs JavaScript SDK"

    # Its retry of a request (the same bytes, the same messageIds) stores nothing twice.
    count = len(live.events())
    for request in sent:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = httpx.post(request.url, content=request.post_data_buffer, headers=headers)
        assert answer.status_code == 200, answer.text
    assert len(live.events()) == count
