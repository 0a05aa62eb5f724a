"""Identity modes for pages, in a real Chromium against the real collector (one per module).

Three products, one per mode: ``cookieless`` (the snippet with ``data-cookieless="true"``
keeps nothing on the device and sends no anonymous id; the collector fills the day's
derived id), ``first-party`` (the snippet's localStorage id) and ``first-party`` with the
server cookie (``sl_id``, HttpOnly, whose id wins over a newer localStorage one); and the
consent upgrade (``sightline.optIn()`` in cookieless mode aliases the visit's cookieless
id to the new persistent id). Every assertion reads what the worker stored.

The test site (127.0.0.1, one port) and the collector (127.0.0.1, another) are one site
for cookies, as a collector served under the site's own domain is.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Page
from redis import Redis

from sightline.cookieless import cookieless_visitor_id
from sightline.identity import IdentityMode
from sightline.model import Event, EventType
from sightline.redis_keys import cookieless_salt_key
from sightline.settings import Settings
from sightline.store.identity import events_of_user
from sightline.store.products import Product, create_product, set_identity
from sightline.store.queries import recent_events
from sightline.store.schema import aliases, users
from tests.browser.live import LiveCollector
from tests.browser.support import WAIT_SECONDS, Site, wait_until_delivered
from tests.harness import REDIS_TIMEOUT
from tests.servers import PostgresServer, RedisServer, new_postgres_database
from worker.main import run_worker

pytestmark = pytest.mark.browser


class Products:
    def __init__(self, live: LiveCollector, cookieless: Product, first: Product, server: Product):
        self.live, self.cookieless, self.first, self.server = live, cookieless, first, server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def modes(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    site: Site,
    sqlite_template: Path,
    postgres_server: PostgresServer | None,
) -> Iterator[Products]:
    """One real collector per store (SQLite, PostgreSQL), with a product in each mode."""
    workdir = tmp_path_factory.mktemp("identity-modes")
    if request.param == "sqlite":
        shutil.copyfile(sqlite_template, workdir / "sightline.db")
        database = f"sqlite:///{workdir / 'sightline.db'}"
    elif postgres_server is None:
        pytest.skip("initdb / pg_ctl not installed")
    else:
        database = new_postgres_database(postgres_server)
    redis = RedisServer(workdir / "redis")
    redis.start()
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(workdir / "data"),
            "REDIS_URL": redis.url,
            "DATABASE_URL": database,
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    live = LiveCollector(settings, redis, (site.url,))
    with live.engine.begin() as conn:
        made: dict[str, Product] = {}
        for name, mode, cookie in (
            ("cookieless", IdentityMode.COOKIELESS, False),
            ("first", IdentityMode.FIRST_PARTY, False),
            ("server", IdentityMode.FIRST_PARTY, True),
        ):
            product = create_product(conn, name, allowed_origins=(site.url,))
            changed = set_identity(conn, product.id, mode, server_cookie=cookie)
            assert changed is not None
            made[name] = changed
    try:
        with live:
            yield Products(live, made["cookieless"], made["first"], made["server"])
    finally:
        redis.stop()


def tag_page(
    site: Site, live: LiveCollector, product: Product, body: str = "", **attrs: str
) -> str:
    options = "".join(f' data-{name}="{value}"' for name, value in attrs.items())
    tag = (
        f'<script defer src="{live.url}/s.js" data-key="{product.write_keys[0]}"{options}></script>'
    )
    return site.add(
        "<!doctype html><html><head><meta charset=utf-8><title>Identity</title>"
        f"{tag}</head><body>{body}</body></html>"
    )


def stored(live: LiveCollector, product: Product, count: int, **match: object) -> list[Event]:
    """The product's stored events matching ``match`` (oldest first), once ``count`` are."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        run_worker(live.settings, burst=True)
        with live.engine.connect() as conn:
            found = [
                e
                for e in recent_events(conn, product_id=product.id, limit=1000)[::-1]
                if all(getattr(e, k) == v for k, v in match.items())
            ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def device_state(
    page: Page, context: BrowserContext
) -> tuple[list[str], dict[str, dict[str, object]]]:
    keys: list[str] = page.evaluate("Object.keys(localStorage)")
    return keys, {str(c["name"]): dict(c) for c in context.cookies()}


def todays_id(live: LiveCollector, product: Product, agent: str) -> str:
    client = Redis.from_url(live.redis.url)
    salt = client.get(cookieless_salt_key(datetime.now(UTC).date()))
    client.close()
    assert isinstance(salt, bytes)
    return cookieless_visitor_id(salt, product.id, "127.0.0.1", agent)


def test_cookieless_keeps_nothing_on_the_device(
    page: Page, context: BrowserContext, site: Site, modes: Products
) -> None:
    live, product = modes.live, modes.cookieless
    url = tag_page(site, live, product, "<p>hi</p>", cookieless="true")
    page.goto(url)
    page.evaluate("sightline.track('Read')")
    wait_until_delivered(page)
    views = stored(live, product, 2)
    agent = page.evaluate("navigator.userAgent")
    expected = todays_id(live, product, agent)
    assert [e.type.value for e in views] == ["page", "track"]
    assert {e.anonymous_id for e in views} == {expected}  # filled in by the collector
    assert all("sessionId" not in e.context for e in views)  # the worker sessionises
    assert len({e.session_id for e in views}) == 1
    keys, cookies = device_state(page, context)
    assert keys == [] and cookies == {}
    # A second page of the same visit, the same day: the same visitor, still nothing kept.
    page.goto(tag_page(site, live, product, cookieless="true"))
    assert {e.anonymous_id for e in stored(live, product, 3)} == {expected}
    assert device_state(page, context) == ([], {})


def test_first_party_keeps_the_localstorage_id(
    page: Page, context: BrowserContext, site: Site, modes: Products
) -> None:
    live, product = modes.live, modes.first
    page.goto(tag_page(site, live, product))
    [view] = stored(live, product, 1)
    cookies = device_state(page, context)[1]
    assert view.anonymous_id == page.evaluate("localStorage.sl_aid") == cookies["sl_aid"]["value"]
    assert "sl_id" not in cookies  # no server cookie unless the product enables it


def test_server_cookie_survives_lost_storage_and_wins(
    page: Page, context: BrowserContext, site: Site, modes: Products
) -> None:
    live, product = modes.live, modes.server
    page.goto(tag_page(site, live, product))
    [first] = stored(live, product, 1)
    wait_until_delivered(page)
    cookies = device_state(page, context)[1]
    server = cookies["sl_id"]
    assert server["value"] == first.anonymous_id == page.evaluate("localStorage.sl_aid")
    assert server["httpOnly"] is True and server["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").count("sl_id") == 0  # not readable by scripts
    # Safari's 7-day cap deletes what scripts stored: the snippet makes a new id...
    page.evaluate("localStorage.clear(); document.cookie = 'sl_aid=; max-age=0; path=/'")
    page.goto(tag_page(site, live, product))
    page.evaluate("sightline.track('Came Back')")
    wait_until_delivered(page)
    newer = page.evaluate("localStorage.sl_aid")
    assert newer != first.anonymous_id
    # ...and the cookie's older id wins: one visitor.
    later = stored(live, product, 3)
    assert {e.anonymous_id for e in later} == {first.anonymous_id}


def test_consent_upgrade_aliases_the_cookieless_visit(
    page: Page, context: BrowserContext, site: Site, modes: Products
) -> None:
    live, product = modes.live, modes.cookieless
    before = len(stored(live, product, 0))
    page.goto(tag_page(site, live, product, cookieless="true"))
    page.evaluate("sightline.track('Before Consent')")
    wait_until_delivered(page)
    stored(live, product, before + 2)
    assert device_state(page, context) == ([], {})
    page.evaluate("sightline.optIn(); sightline.track('After Consent')")
    wait_until_delivered(page)
    persistent = page.evaluate("localStorage.sl_aid")
    assert persistent and uuid.UUID(persistent)
    visit = todays_id(live, product, page.evaluate("navigator.userAgent"))
    [alias] = stored(live, product, 1, type=EventType.ALIAS)
    assert alias.user_id == persistent
    with live.engine.connect() as conn:
        linked = conn.execute(
            sa.select(aliases.c.alias, users.c.external_id)
            .join(users, users.c.id == aliases.c.user_id)
            .where(aliases.c.product_id == product.id, aliases.c.alias == visit)
        ).all()
        person = events_of_user(conn, product.id, persistent)
    assert [tuple(row) for row in linked] == [(visit, persistent)]
    # One person: the page view and the event before consent, and what came after.
    names = {e.name: e.anonymous_id for e in person}
    assert names["page_view"] == names["Before Consent"] == visit
    assert names["After Consent"] == persistent
