"""Issue 4, item 12: one page view through every dialect gives the same canonical record.

Compared field by field: name, time, user, account, product and context. Two
wire formats cannot say everything: Gameball carries no event time (the receive
time is used, so it is compared to the others within the test's duration) and
Pyze, Gameball, Matomo and GA4 carry no account (the event inherits the account
of its user, which a Fuzy user call set first). Matomo's view is an event named by
its action (``e_a``), GA4's an event named ``view``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sightline.model import Event
from tests.harness import System

USER, ACCOUNT, NAME, AGENT = "ann", "acme", "view", "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"
OWN_CONTEXT = {"snowplow": "snowplow"}
"""The context key where a format keeps what is its own (Snowplow's app id and event code in
``context.snowplow``): not compared."""


@pytest.fixture
def views(system: System) -> dict[str, Event]:
    server = {"Authorization": f"Bearer {system.server_key}", "User-Agent": AGENT}
    user = {"id": USER, "account_id": ACCOUNT}
    assert system.client.put("/v3/user", json=user, headers=server).status_code == 202
    system.work()
    started = datetime.now(UTC).replace(microsecond=0)
    at = started.isoformat().replace("+00:00", "Z")
    sends = {
        "native": system.client.post(
            "/v1/page",
            json={"userId": USER, "name": NAME, "timestamp": at},
            headers={"X-Write-Key": system.write_key, "User-Agent": AGENT},
        ),
        "fuzy": system.client.put(
            "/v3/event",
            json={
                "eventType": NAME,
                "timestamp": at,
                "user": {"userId": USER, "accountId": ACCOUNT},
            },
            headers=server,
        ),
        "pyze": system.client.post(
            "/v1/events",
            json={
                "type": "event",
                "event": NAME,
                "userId": USER,
                "eventTime": at,
                "appKey": system.write_key,
                "context": {"userAgent": AGENT},
            },
            headers={"User-Agent": "pyze-backend/1.0"},
        ),
        "das": system.client.post(
            "/api/v1/analytics_events",
            json={
                "customer_id": ACCOUNT,
                "user_id": USER,
                "event_type": NAME,
                "javascript_local_time": at,
            },
            headers=server,
        ),
        "gameball": system.client.post(
            "/integrations/event",
            json={"playerUniqueId": USER, "events": {NAME: {}}},
            headers={"APIKey": system.write_key, "User-Agent": AGENT},
        ),
        "snowplow": system.client.get(
            "/i",
            params={
                "e": "se",
                "se_ca": "page",
                "se_ac": NAME,
                "uid": USER,
                "dtm": str(int(started.timestamp() * 1000)),
                "aid": system.write_key,
            },
            headers={"User-Agent": AGENT},
        ),
        "posthog": system.client.post(
            "/e/",
            json={
                "api_key": system.write_key,
                "event": NAME,
                "distinct_id": USER,
                "timestamp": at,
                "properties": {"$groups": {"company": ACCOUNT}},
            },
            headers={"User-Agent": AGENT},
        ),
        "matomo": system.client.get(
            "/matomo.php",
            params={
                "idsite": system.write_key,
                "rec": "1",
                "e_c": "page",
                "e_a": NAME,
                "uid": USER,
                "cdt": str(int(started.timestamp())),
                "ua": AGENT,
            },
        ),
        "ga4": system.client.post(
            "/mp/collect",
            params={"measurement_id": system.write_key, "api_secret": system.server_key},
            json={
                "client_id": "c-1",
                "user_id": USER,
                "timestamp_micros": int(started.timestamp()) * 1_000_000,
                "events": [{"name": NAME}],
            },
            headers={"User-Agent": AGENT},
        ),
    }
    for dialect, r in sends.items():
        assert r.status_code < 300, (dialect, r.text)
    system.work()
    found = {e.dialect: e for e in system.events() if e.name == NAME}
    assert set(found) == set(sends)
    return found


def test_the_records_agree_field_by_field(system: System, views: dict[str, Event]) -> None:
    reference = views["native"]
    for dialect, event in views.items():
        assert event.name == NAME, dialect
        assert event.user_id == USER, dialect
        assert event.account_id == ACCOUNT, dialect
        assert event.product_id == system.product.id, dialect
        context = {k: v for k, v in event.context.items() if k != OWN_CONTEXT.get(dialect)}
        assert context == reference.context, dialect
        if dialect == "gameball":  # no event time on its wire: the time it was received
            assert abs(event.timestamp - reference.timestamp) < timedelta(seconds=30)
        else:
            assert event.timestamp == reference.timestamp, dialect


def test_context_is_the_clients(views: dict[str, Event]) -> None:
    # Pyze's server-side call names the device's agent in context, not its own.
    assert {e.context["userAgent"] for e in views.values()} == {AGENT}
