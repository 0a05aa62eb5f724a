"""The same page view sent as a Segment-style page, an Umami call and a Plausible event.

Stored, they must be the same canonical page view: type, name, page (url, path, search,
referrer), client (address, user agent and what the worker derives from it) and the
campaign the worker derives from the page. What a wire format cannot say is compared
as far as it can: Plausible sends no title and no clock (its time is when it was
received) and no visitor id (its visitor is the day's cookieless id).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sightline.model import Event, EventType
from sightline.store.products import add_identifier
from tests.harness import System

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
URL, TITLE = "https://shop.example/pricing?utm_source=mail", "Pricing"
REFERRER = "https://search.example/"
WEBSITE = "6d0f3b52-2f7e-4a51-8c4b-0e9a7f1c2d3e"
SHARED = ("ip", "userAgent", "ua", "campaign")
PAGE = ("url", "path", "search", "referrer")


def test_one_visit_three_wire_formats(system: System) -> None:
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "plausible", "shop.example")
        add_identifier(conn, system.product.id, "umami", WEBSITE)
    at = datetime.now(UTC).replace(microsecond=0)
    page = {
        "url": URL,
        "path": "/pricing",
        "search": "?utm_source=mail",
        "title": TITLE,
        "referrer": REFERRER,
    }
    native = {"anonymousId": "visitor-1", "timestamp": at.isoformat(), "context": {"page": page}}
    headers = {"User-Agent": AGENT}
    assert system.send("/v1/page", native, headers=headers).status_code == 200
    umami = {
        "type": "event",
        "payload": {
            "website": WEBSITE,
            "hostname": "shop.example",
            "url": URL,
            "title": TITLE,
            "referrer": REFERRER,
            "vid": "visitor-1",
            "timestamp": int(at.timestamp()),
        },
    }
    assert system.client.post("/api/send", json=umami, headers=headers).status_code == 200
    plausible = {"n": "pageview", "u": URL, "d": "shop.example", "r": REFERRER}
    assert system.client.post("/api/event", json=plausible, headers=headers).status_code == 202
    system.work()
    views: dict[str, Event] = {e.dialect: e for e in system.events()}
    assert set(views) == {"native", "umami", "plausible"}
    reference = views["native"]
    for dialect, event in views.items():
        assert (event.type, event.name) == (EventType.PAGE, "page_view"), dialect
        assert event.product_id == system.product.id, dialect
        seen = event.context["page"]
        assert {k: seen.get(k) for k in PAGE} == {k: page[k] for k in PAGE}, dialect
        assert {k: event.context.get(k) for k in SHARED} == {
            k: reference.context.get(k) for k in SHARED
        }, dialect
    assert views["umami"].context["page"]["title"] == TITLE
    assert views["umami"].anonymous_id == reference.anonymous_id == "visitor-1"
    assert views["plausible"].anonymous_id not in (None, "visitor-1")
    assert views["umami"].timestamp == reference.timestamp == at
    assert abs(views["plausible"].timestamp - at) < timedelta(seconds=30)
