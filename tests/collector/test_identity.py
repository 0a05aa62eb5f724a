"""Identity modes over the API (``collector.identity``): the daily salt's rotation, the
pixel's anonymous hits, the cookieless fill and consent alias of ``/v1/batch``, and the
``sl_id`` server cookie. The same in Chromium: ``tests/browser/test_identity_modes.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from collector.app import create_app
from collector.salts import KEEP_SECONDS, DailySalts
from sightline.cookieless import cookieless_visitor_id
from sightline.identity import IdentityMode, same_site
from sightline.model import Event
from sightline.redis_keys import cookieless_salt_key
from sightline.settings import Settings
from sightline.store.products import Product, create_product, set_identity
from sightline.store.schema import aliases
from tests.cli.test_cli import invoke, run
from tests.harness import System, basic
from worker.main import run_worker

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def product_in(system: System, mode: IdentityMode, *, server_cookie: bool = False) -> Product:
    with system.engine.begin() as conn:
        product = create_product(conn, f"{mode.value} {server_cookie}")
        changed = set_identity(conn, product.id, mode, server_cookie=server_cookie)
    assert changed is not None and changed.identity_mode is mode
    return changed


@contextmanager
def client_at(settings: Settings, ip: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=(ip, 50000)) as client:
        yield client


def stored(system: System, product: Product) -> list[Event]:
    run_worker(system.settings, burst=True)
    return system.events(product.id)[::-1]


def todays_salt(system: System) -> bytes:
    salt = system.redis.get(cookieless_salt_key(datetime.now(UTC).date()))
    assert isinstance(salt, bytes)
    return salt


@SQLITE  # Redis only: the store plays no part
def test_salts_rotate_daily_and_are_kept_two_days(system: System) -> None:
    async def salts_of(days: list[datetime]) -> list[bytes]:
        redis = AsyncRedis.from_url(system.settings.redis_url or "")
        try:
            # a new DailySalts each day, as a collector that restarted; the same one twice
            return [await DailySalts(redis, 5.0).today(day) for day in days]
        finally:
            await redis.aclose()

    first = datetime(2026, 11, 1, 23, 59, tzinfo=UTC)
    days = [first, first + timedelta(minutes=2), first + timedelta(days=1, minutes=1)]
    days.append(first + timedelta(days=2, minutes=1))
    salts = asyncio.run(salts_of([*days, days[0]]))
    assert salts[0] == salts[4]  # one salt per day, shared through Redis
    assert len({salts[0], salts[1], salts[2], salts[3]}) == 4
    ids = [cookieless_visitor_id(s, "prd", "203.0.113.9", AGENT) for s in salts[:4]]
    assert len(set(ids)) == 4  # the third day's id differs from both others
    for day in days:
        key = cookieless_salt_key(day.date())
        assert 0 < system.redis.ttl(key) <= KEEP_SECONDS == 2 * 24 * 3600
    # Only salts, never an address or an agent, in Redis.
    dump = b"".join(
        system.redis.get(k) or b"" for k in system.redis.keys("sightline:cookieless-salt:*")
    )
    assert b"203.0.113.9" not in dump and AGENT.encode() not in dump


def test_an_anonymous_pixel_hit_gets_its_visitors_id_of_the_day(system: System) -> None:
    product = system.product  # the default mode: the pixel follows the same rules
    key = product.write_keys[0]
    for n, ip in enumerate(("203.0.113.9", "203.0.113.9", "198.51.100.7")):
        # distinct pages: identical hits within a minute are one event (their content id)
        params = {"k": key, "u": f"https://site.example/{n}"}
        with client_at(system.settings, ip) as client:
            answer = client.get("/p.gif", params=params, headers={"user-agent": AGENT})
            assert answer.status_code == 200
    salt = todays_salt(system)
    ids = [e.anonymous_id for e in stored(system, product)]
    assert ids == [
        cookieless_visitor_id(salt, product.id, ip, AGENT)
        for ip in ("203.0.113.9", "203.0.113.9", "198.51.100.7")
    ]
    assert "pixel-anonymous" not in ids and ids[0] != ids[2]
    # a hit that names its visitor keeps its id
    system.client.get("/p.gif", params={"k": key, "a": "known-1"})
    assert stored(system, product)[-1].anonymous_id == "known-1"


def test_cookieless_batch_gets_the_id_and_consent_is_aliased(system: System) -> None:
    product = product_in(system, IdentityMode.COOKIELESS)
    batch: list[dict[str, Any]] = [
        {"type": "page", "messageId": "m1", "context": {"sessionId": "per-page"}},
        {"type": "track", "event": "Read", "messageId": "m2"},
    ]
    body = {"writeKey": product.write_keys[0], "batch": batch}
    with client_at(system.settings, "203.0.113.9") as client:
        headers = {"user-agent": AGENT}
        assert client.post("/v1/batch", json=body, headers=headers).json() == {"success": True}
        consent = {"type": "alias", "messageId": "m3", "userId": "p-1", "anonymousId": "p-1"}
        answer = client.post("/v1/batch", json=body | {"batch": [consent]}, headers=headers)
        assert answer.status_code == 200, answer.text
    visit = cookieless_visitor_id(todays_salt(system), product.id, "203.0.113.9", AGENT)
    events = stored(system, product)
    assert [e.anonymous_id for e in events[:2]] == [visit, visit]
    assert "sessionId" not in events[0].context  # the worker sessionises the visitor
    assert events[2].properties.get("previousId", visit) == visit
    # Without the cookieless mode, a message without an id is refused as before.
    plain = {"writeKey": system.write_key, "batch": batch}
    refused = system.client.post("/v1/batch", json=plain)
    assert refused.status_code == 400 and "anonymousId" in refused.text


def test_the_server_cookie_is_set_for_the_own_site_and_wins(system: System) -> None:
    product = product_in(system, IdentityMode.FIRST_PARTY, server_cookie=True)
    body = {
        "writeKey": product.write_keys[0],
        "batch": [{"type": "page", "messageId": "s1", "anonymousId": "from-storage"}],
    }
    own = {"origin": "http://www.site.test", "host": "stats.site.test"}
    with client_at(system.settings, "203.0.113.9") as client:
        answer = client.post("/v1/batch", json=body, headers=own)
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("sl_id=from-storage;") and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie and "Max-Age=34560000" in cookie
        client.cookies.clear()
        # Another site's page: no cookie.
        other = {"origin": "http://elsewhere.example", "host": "stats.site.test"}
        assert "set-cookie" not in client.post("/v1/batch", json=body, headers=other).headers
        # The cookie's (older) id wins over a newer localStorage one.
        newer = {**body, "batch": [{"type": "page", "messageId": "s2", "anonymousId": "newer"}]}
        answer = client.post(
            "/v1/batch", json=newer, headers=own | {"cookie": "sl_id=from-storage"}
        )
        assert answer.headers["set-cookie"].startswith("sl_id=from-storage;")
    # s1 (sent twice) and s2
    assert [e.anonymous_id for e in stored(system, product)] == ["from-storage"] * 2


def test_same_site() -> None:
    assert same_site("https://www.site.example", "https", "stats.site.example")
    assert same_site("http://127.0.0.1:5000", "http", "127.0.0.1:8000")
    assert not same_site("https://www.site.example", "http", "stats.site.example")
    assert not same_site("https://other.example", "https", "stats.site.example")
    assert not same_site("http://127.0.0.2", "http", "127.0.0.1:8000")
    assert not same_site(None, "https", "site.example")


def test_the_cli_sets_the_mode_and_the_collector_applies_it(system: System) -> None:
    pid = system.product.id
    assert "identity cookieless" in run(system, "products", "identity", pid, "cookieless")
    wrong = invoke(system, "products", "identity", pid, "cookieless", "--server-cookie")
    assert wrong.exit_code == 2 and "first-party only" in wrong.output
    assert system.client.portal is not None
    system.client.portal.call(system.client.app_state["directory"].reload)
    body = {"writeKey": system.write_key, "batch": [{"type": "page", "messageId": "c1"}]}
    assert system.client.post("/v1/batch", json=body).status_code == 200
    shown = run(system, "products", "identity", pid, "first-party", "--server-cookie")
    assert "identity first-party, server cookie sl_id" in shown
    system.client.portal.call(system.client.app_state["directory"].reload)
    refused = system.client.post("/v1/batch", json=body | {"batch": [{"type": "page"}]})
    assert refused.status_code == 400
    [event] = stored(system, system.product)
    assert event.anonymous_id and event.message_id == "c1"


def test_single_messages_follow_the_same_rules(system: System) -> None:
    cookieless = product_in(system, IdentityMode.COOKIELESS)
    server = product_in(system, IdentityMode.FIRST_PARTY, server_cookie=True)
    with client_at(system.settings, "203.0.113.9") as client:
        headers = {"user-agent": AGENT} | basic(cookieless.write_keys[0])
        page = client.post("/v1/page", json={"messageId": "p1"}, headers=headers)
        assert page.status_code == 200, page.text
        consent = {"messageId": "p2", "userId": "p-9", "anonymousId": "p-9"}
        aliased = client.post("/v1/alias", json=consent, headers=headers)
        assert aliased.status_code == 200, aliased.text
        own = {"origin": "http://www.site.test", "host": "stats.site.test"}
        track = {"event": "E", "anonymousId": "ls-1", "messageId": "t1"}
        answer = client.post("/v1/track", json=track, headers=own | basic(server.write_keys[0]))
        assert answer.headers["set-cookie"].startswith("sl_id=ls-1;")
    visit = cookieless_visitor_id(todays_salt(system), cookieless.id, "203.0.113.9", AGENT)
    assert [e.anonymous_id for e in stored(system, cookieless)] == [visit, "p-9"]
    with system.engine.connect() as conn:
        linked = conn.execute(
            sa.select(aliases.c.alias).where(aliases.c.product_id == cookieless.id)
        ).scalars()
        assert visit in set(linked)
    # a first-party product still refuses a message without an id
    refused = system.client.post(
        "/v1/page", json={"messageId": "p3"}, headers=basic(system.write_key)
    )
    assert refused.status_code == 400
