"""Umami's tracker in Chromium, against the real collector (SQLite).

Umami publishes no installable tracker package (``@umami/tracker`` does not exist on npm;
the ``umami`` package is the whole server, with Next.js and Prisma), so the page below
runs the calls of its tracker as published: umami-software/umami, ``src/tracker/index.js``
(the version that sends ``vid`` and reads ``{cache, disabled}`` from the answer). Its
``getPayload``, ``send``, ``track``, ``identify`` and ``pushState`` hook are copied from
that file, with only the script-tag attribute reading replaced by constants: a
``fetch`` with ``keepalive``, ``Content-Type: application/json``, ``credentials: 'omit'``
and, once answered, the ``x-umami-cache`` header (so every later call is preflighted).
Umami's Node client is proven in tests/dialects/test_umami.py.

What a site changes: ``data-host-url`` to the collector, ``data-website-id`` to a website id
the product registered (``sightline products ids ID add umami UUID``) or its write key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Request

from sightline.model import EventType
from sightline.store.products import add_identifier
from sightline.store.schema import user_attributes, users
from tests.browser.live import LiveCollector
from tests.browser.vendor import VendorSite, local_only, module_collector, serving
from tests.servers import RedisServer

pytestmark = pytest.mark.browser
WEBSITE = "0b5e1c1e-7d3c-4a8e-9a55-3f1d2c4b5a61"

# umami-software/umami src/tracker/index.js, the parts a page view, an event and an
# identify go through; `website`, `endpoint` and `credentials` are the script tag's
# data-website-id, data-host-url + /api/send and data-fetch-credentials (default 'omit').
TRACKER = """
(window => {
  const {
    screen: { width, height },
    navigator: { language },
    location,
    document,
    history,
  } = window;
  const { referrer } = document;
  const { hostname, href, origin } = location;
  const localStorage = window.localStorage;
  const website = %(website)s;
  const endpoint = %(endpoint)s;
  const credentials = 'omit';
  const tag = undefined;
  const screen = `${width}x${height}`;
  const delayDuration = 300;

  const getVisitorId = () => {
    try {
      const storageKey = 'umami.visitor';
      let vid = localStorage.getItem(storageKey);
      if (!vid) {
        vid = crypto.randomUUID();
        localStorage.setItem(storageKey, vid);
      }
      return vid;
    } catch {
      return undefined;
    }
  };
  const visitorId = getVisitorId();
  const normalize = raw => raw;

  const getPayload = () => ({
    website,
    screen,
    language,
    title: document.title,
    hostname,
    url: currentUrl,
    referrer: currentRef,
    tag,
    id: identity ? identity : undefined,
    vid: visitorId,
  });

  const handlePush = (_state, _title, url) => {
    if (!url) return;
    currentRef = currentUrl;
    currentUrl = normalize(new URL(url, location.href).toString());
    if (currentUrl !== currentRef) {
      setTimeout(track, delayDuration);
    }
  };

  const handlePathChanges = () => {
    const hook = (_this, method, callback) => {
      const orig = _this[method];
      return (...args) => {
        callback.apply(null, args);
        return orig.apply(_this, args);
      };
    };
    history.pushState = hook(history, 'pushState', handlePush);
    history.replaceState = hook(history, 'replaceState', handlePush);
  };

  const send = async (payload, type = 'event') => {
    if (disabled) return;
    try {
      const res = await fetch(endpoint, {
        keepalive: true,
        method: 'POST',
        body: JSON.stringify({ type, payload }),
        headers: {
          'Content-Type': 'application/json',
          ...(typeof cache !== 'undefined' && { 'x-umami-cache': cache }),
        },
        credentials,
      });
      const data = await res.json();
      if (data) {
        disabled = !!data.disabled;
        cache = data.cache;
      }
    } catch (e) {
      /* no-op */
    }
  };

  const track = (name, data) => {
    if (typeof name === 'string') return send({ ...getPayload(), name, data });
    if (typeof name === 'object') return send({ ...name });
    if (typeof name === 'function') return send(name(getPayload()));
    return send(getPayload());
  };

  const identify = (id, data) => {
    if (typeof id === 'string') {
      identity = id;
    }
    cache = '';
    return send({ ...getPayload(), data: typeof id === 'object' ? id : data }, 'identify');
  };

  window.umami = { track, identify };

  let currentUrl = normalize(href);
  let currentRef = normalize(referrer.startsWith(origin) ? '' : referrer);
  let disabled = false;
  let cache;
  let identity;

  handlePathChanges();
  window.firstView = track();
})(window);
"""

PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Pricing &amp; plans</title>
</head><body>pricing<script>%(tracker)s</script></body></html>"""


@pytest.fixture(scope="module")
def site() -> Iterator[VendorSite]:
    with serving(VendorSite({})) as site:
        yield site


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    sqlite_template: Path,
    site: VendorSite,
) -> Iterator[LiveCollector]:
    workdir = tmp_path_factory.mktemp("umami-live")
    with module_collector(workdir, redis_server, sqlite_template, (site.url,)) as collector:
        with collector.engine.begin() as conn:
            add_identifier(conn, collector.product.id, "umami", WEBSITE)
        yield collector


def test_umami_tracker(live: LiveCollector, site: VendorSite, context: BrowserContext) -> None:
    offsite = local_only(context)
    tracker = TRACKER % {
        "website": json.dumps(WEBSITE),
        "endpoint": json.dumps(live.url + "/api/send"),
    }
    url = site.add(PAGE % {"tracker": tracker}, name="pricing.html")
    page = context.new_page()
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/send") else None)
    page.goto(url + "?utm_source=newsletter")
    page.evaluate("window.firstView")
    with page.expect_response(lambda r: r.url.endswith("/api/send")):
        page.evaluate("history.pushState({}, '', 'checkout')")  # tracked 300 ms later
    page.evaluate("umami.track('Signup', {plan: 'pro', seats: 3})")
    page.evaluate("umami.identify('user-42', {company: 'Acme', plan: 'pro'})")
    page.evaluate("umami.track('Upgrade', {to: 'team'})")
    stored = [m["stored"] for m in live.wait_for(5)]
    assert len(stored) == 5, stored
    view, pushed, signup, identify, upgrade = stored
    assert {e.dialect for e in stored} == {"umami"}
    folder = url.rsplit("/", 1)[0]
    assert (view.type, view.name) == (EventType.PAGE, "page_view")
    assert view.context["page"] == {
        "url": url + "?utm_source=newsletter",
        "path": urlsplit(url).path,
        "search": "?utm_source=newsletter",
        "title": "Pricing & plans",
    }
    assert view.context["campaign"]["source"] == "newsletter"
    assert view.context["locale"] == page.evaluate("navigator.language")
    assert view.context["screen"]["width"] > 0
    assert (pushed.type, pushed.context["page"]["url"]) == (EventType.PAGE, folder + "/checkout")
    assert pushed.context["page"]["referrer"] == url + "?utm_source=newsletter"
    assert (signup.type, signup.name, signup.properties) == (
        EventType.TRACK,
        "Signup",
        {"plan": "pro", "seats": 3},
    )
    assert (identify.type, identify.user_id) == (EventType.IDENTIFY, "user-42")
    assert (upgrade.name, upgrade.user_id) == ("Upgrade", "user-42")
    vid = page.evaluate("localStorage.getItem('umami.visitor')")
    assert {e.anonymous_id for e in stored} == {vid}
    assert len({e.session_id for e in stored}) == 1  # one visit, carried by the cache token
    # The answer's cache came back, as the tracker sends it (identify resets it to '').
    caches = [r.headers.get("x-umami-cache") for r in sent]
    assert caches[0] is None and all(caches[1:3]) and caches[3] == "" and caches[4]
    [user] = live_sql(live, sa.select(users.c.id).where(users.c.external_id == "user-42"))
    traits = live_sql(
        live, sa.select(user_attributes.c.name).where(user_attributes.c.user_id == user.id)
    )
    assert {row.name for row in traits} == {"company", "plan"}
    assert offsite == []


def live_sql(live: LiveCollector, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    with live.engine.connect() as conn:
        return list(conn.execute(statement))
