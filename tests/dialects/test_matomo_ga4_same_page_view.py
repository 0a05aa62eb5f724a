"""The same page view sent as a Segment-style page, a Matomo request and a GA4 page_view.

Each wire format says the visit its own way (Matomo: ``url``, ``action_name``, ``urlref``,
``_id``, ``cdt``, ``ua``; GA4: ``page_location``, ``page_title``, ``page_referrer``,
``client_id``, ``timestamp_micros``); stored, they must be the same canonical page view:
type, name, visitor, time and the whole context (page, user agent, and what the worker
derives from them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from sightline.model import Event, EventType
from tests.harness import System

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
URL, TITLE, REFERRER = "https://shop.example/pricing?plan=pro", "Pricing", "https://search.example/"


def test_one_visit_three_wire_formats(system: System) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    native = {
        "anonymousId": "visitor-1",
        "name": TITLE,
        "timestamp": at.isoformat(),
        "context": {
            "page": {
                "url": URL,
                "path": "/pricing",
                "search": "?plan=pro",
                "title": TITLE,
                "referrer": REFERRER,
            }
        },
    }
    r = system.send("/v1/page", native, headers={"User-Agent": AGENT})
    assert r.status_code == 200, r.text
    matomo = {
        "idsite": system.write_key,
        "rec": "1",
        "url": URL,
        "action_name": TITLE,
        "urlref": REFERRER,
        "_id": "visitor-1",
        "cdt": str(int(at.timestamp())),
        "ua": AGENT,
        "rand": "42",
    }
    assert system.client.get("/matomo.php?" + urlencode(matomo)).status_code == 200
    ga4 = {
        "client_id": "visitor-1",
        "timestamp_micros": int(at.timestamp()) * 1_000_000,
        "events": [
            {
                "name": "page_view",
                "params": {"page_location": URL, "page_title": TITLE, "page_referrer": REFERRER},
            }
        ],
    }
    query = {"measurement_id": system.write_key, "api_secret": system.server_key}
    r = system.client.post("/mp/collect", params=query, json=ga4, headers={"User-Agent": AGENT})
    assert r.status_code == 204, r.text
    system.work()
    views: dict[str, Event] = {e.dialect: e for e in system.events()}
    assert set(views) == {"native", "matomo", "ga4"}
    reference = views["native"]
    for dialect, event in views.items():
        assert (event.type, event.name) == (EventType.PAGE, TITLE), dialect
        assert (event.anonymous_id, event.user_id) == ("visitor-1", None), dialect
        assert event.timestamp == reference.timestamp == at, dialect
        assert event.context == reference.context, dialect
