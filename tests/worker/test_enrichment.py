"""Enrichment as the worker applies it: collector -> Redis -> worker -> store, both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from sightline.geo import GeoLocator, default_city_db
from sightline.model import BotHandling, Event, EventType, IpHandling
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.products import Product, ProductSettings, update_product
from tests.harness import System
from tests.worker.test_batch import queued_envelopes_all
from worker.batch import BatchProcessor
from worker.enrich import UserAgentParser
from worker.enricher import Enricher
from worker.main import run_worker

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/124.0.0.0 Safari/537.36"
)
# Real user-agent strings with the family, OS and device type the worker must store.
AGENTS = [
    pytest.param(CHROME_WIN, "Chrome", "Windows", "desktop", False, id="chrome-windows"),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "mobile",
        False,
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "tablet",
        False,
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "Ubuntu",
        "desktop",
        False,
        id="firefox-ubuntu",
    ),
    pytest.param(GOOGLEBOT, "Googlebot", "Other", "bot", True, id="googlebot"),
    pytest.param(HEADLESS, "HeadlessChrome", "Linux", "bot", True, id="headless-chrome"),
    pytest.param("curl/8.5.0", "curl", "Other", "bot", True, id="curl"),
]


def page(system: System, *, agent: str = CHROME_WIN, ip: str = "81.2.69.142", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "anonymousId": "anon-1",
        "name": "Pricing",
        "context": {
            "ip": ip,
            "page": {
                "url": "https://shop.example/pricing?utm_source=newsletter&utm_medium=email"
                "&utm_campaign=spring&gclid=abc",
                "referrer": "https://mail.google.com/mail/u/0/",
            },
        },
    } | extra
    response = system.send("/v1/page", body, headers={"User-Agent": agent})
    assert response.status_code == 200, response.text
    return response


def set_product(system: System, **changes: Any) -> None:
    with system.engine.begin() as conn:
        update_product(conn, system.product.id, ProductSettings(**changes))


def test_a_page_view_is_enriched_with_agent_location_campaign_and_clock(system: System) -> None:
    sent = datetime.now(UTC) + timedelta(hours=2)  # the client's clock is two hours fast
    page(
        system,
        sentAt=sent.isoformat(),
        timestamp=(sent - timedelta(seconds=30)).isoformat(),
    )
    system.work()
    [event] = system.events()
    context = event.context
    assert context["ua"] | {"browser_version": "-"} == {
        "browser_family": "Chrome",
        "browser_version": "-",
        "os_family": "Windows",
        "os_version": "10",
        "device_family": "Other",
        "device_type": "desktop",
        "is_bot": False,
    }
    assert event.is_bot is False
    assert context["geo"] == {
        "country_code": "GB",
        "country": "United Kingdom",
        "region": "Brent",
        "region_code": "BEN",
        "city": "Willesden",
        "postal_code": "NW10",
        "latitude": 51.53,
        "longitude": -0.23,
        "time_zone": "Europe/London",
    }
    assert context["campaign"] == {
        "source": "newsletter",
        "medium": "email",
        "name": "spring",
        "click_ids": {"gclid": "abc"},
        "referrer_host": "mail.google.com",
        "referrer_name": "Gmail",
        "channel": "email",
    }
    assert context["ip"] == "81.2.69.142"  # the default product keeps full addresses
    # Placed 30 s before we received it, whatever the client's clock said.
    assert event.timestamp == event.received_at - timedelta(seconds=30)
    assert abs(context["clock"]["skew_ms"] - 2 * 3600 * 1000) < 60_000
    assert context["clock"]["clamped"] is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("agent", "browser", "os", "device_type", "is_bot"), AGENTS)
def test_real_user_agents(
    system: System, agent: str, browser: str, os: str, device_type: str, is_bot: bool
) -> None:
    page(system, agent=agent)
    system.work()
    [event] = system.events()
    assert event.context["ua"]["browser_family"] == browser
    assert event.context["ua"]["os_family"] == os
    assert event.context["ua"]["device_type"] == device_type
    assert event.is_bot is is_bot


def test_an_event_dated_days_ahead_is_clamped_and_flagged(system: System) -> None:
    future = datetime.now(UTC) + timedelta(days=3)
    system.send("/v1/track", {"userId": "u", "event": "Later", "timestamp": future.isoformat()})
    system.work()
    [event] = system.events()
    assert event.timestamp == event.received_at
    assert event.original_timestamp == future
    assert event.context["clock"] == {"clamped": True}


@pytest.mark.parametrize(
    ("policy", "stored"),
    [
        pytest.param(IpHandling.FULL, "2a02:8108:1:2:3:4:5:6", id="full"),
        pytest.param(IpHandling.TRUNCATED, "2a02:8108:1::", id="truncated"),
        pytest.param(IpHandling.NONE, None, id="none"),
    ],
)
def test_ip_handling_applies_to_every_copy_of_the_address(
    system: System, policy: IpHandling, stored: str | None
) -> None:
    set_product(system, ip_handling=policy)
    address = "2a02:8108:1:2:3:4:5:6"
    system.send(
        "/v1/track",
        {
            "userId": "u",
            "event": "E",
            "context": {"ip": address, "device": {"lastIp": address, "ips": [address, "x"]}},
        },
    )
    system.work()
    [event] = system.events()
    assert event.context["ip"] == stored
    assert event.context["device"] == {"lastIp": stored, "ips": [stored, "x"]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_truncated_ipv4_and_located_from_the_whole_address(system: System) -> None:
    set_product(system, ip_handling=IpHandling.TRUNCATED)
    page(system, ip="81.2.69.142")
    system.work()
    [event] = system.events()
    assert event.context["ip"] == "81.2.69.0"
    assert event.context["geo"]["city"] == "Willesden"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dead_letters_keep_only_what_the_product_allows(system: System) -> None:
    set_product(system, ip_handling=IpHandling.NONE)
    system.send(
        "/v1/track",
        {"userId": "u", "event": "E", "context": {"ip": "8.8.4.4", "sessionId": "s" * 300}},
    )
    system.work()
    [letter] = system.dead_letters()
    assert letter.reason == "size"
    assert "8.8.4.4" not in str(letter.envelope)
    assert letter.envelope["body"]["context"]["ip"] is None


def test_private_addresses_get_no_location(system: System) -> None:
    page(system, ip="192.168.1.20")
    system.work()
    [event] = system.events()
    assert "geo" not in event.context
    assert event.context["ip"] == "192.168.1.20"


def test_bots_are_flagged_by_default_and_dropped_when_the_product_says_so(
    system: System,
) -> None:
    page(system, agent=GOOGLEBOT, messageId="bot-1")
    page(system, agent=CHROME_WIN, messageId="human-1")
    system.work()
    assert sorted((e.message_id, e.is_bot) for e in system.events()) == [
        ("bot-1", True),
        ("human-1", False),
    ]
    set_product(system, bot_handling=BotHandling.DROP)
    page(system, agent=HEADLESS, messageId="bot-2")
    page(system, agent=CHROME_WIN, messageId="human-2")
    system.work()
    assert {e.message_id for e in system.events()} == {"bot-1", "human-1", "human-2"}
    assert system.dead_letters() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dropped_bots_are_counted(system: System) -> None:
    set_product(system, bot_handling=BotHandling.DROP)
    page(system, agent=GOOGLEBOT, messageId="bot-1")
    page(system, agent=CHROME_WIN, messageId="human-1")
    envelopes = queued_envelopes_all(system)
    processor = BatchProcessor(system.engine, Enricher())
    result = processor.process(envelopes)
    assert (result.stored, result.bots_dropped, result.dead_letters) == (1, 1, 0)


def _mmdb(path: Path, database_type: str, records: dict[str, dict[str, Any]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type)
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_geoip_db_and_asn_db_from_settings(system: System, tmp_path: Path) -> None:
    city = _mmdb(
        tmp_path / "city.mmdb",
        "GeoIP2-City",
        {
            "203.0.114.0/24": {
                "country": {"iso_code": "NZ", "names": {"en": "New Zealand"}},
                "city": {"names": {"en": "Wellington"}},
                "location": {"latitude": -41.28664, "longitude": 174.77557},
            }
        },
    )
    asn = _mmdb(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        {
            "203.0.114.0/24": {
                "autonomous_system_number": 64500,
                "autonomous_system_organization": "Example Net",
            }
        },
    )
    settings = system.settings.with_changes(geoip_db=str(city), geoip_asn_db=str(asn))
    system.send("/v1/track", {"userId": "u", "event": "E", "context": {"ip": "203.0.114.9"}})
    run_worker(settings, burst=True)
    [event] = system.events()
    assert event.context["geo"] == {
        "country_code": "NZ",
        "country": "New Zealand",
        "city": "Wellington",
        "latitude": -41.29,
        "longitude": 174.78,
        "asn": 64500,
        "as_org": "Example Net",
    }


def test_geoip_off_and_unusable_inputs_do_not_stop_the_worker(tmp_path: Path) -> None:
    enricher = Enricher.from_settings(Settings(geoip_db="off"))
    assert enricher.geo is None
    enricher = Enricher(UserAgentParser(), GeoLocator(_shipped()))
    now = datetime.now(UTC)
    event = Event(
        id="e",
        message_id="m",
        product_id="p",
        name="E",
        type=EventType.TRACK,
        timestamp=now,
        received_at=now,
        context={
            "ip": "x" * 10_000,
            "userAgent": "(" * 100_000,
            "page": {"url": "http://[::1", "referrer": 42},
            "campaign": "not a dict",
        },
    )
    product = Product(id="p", name="P", ip_handling=IpHandling.TRUNCATED)
    enriched = enricher.enrich_event(event, product)
    assert enriched.context["ip"] is None
    assert enriched.context["campaign"]["channel"] == "direct"
    assert event.context["ip"] == "x" * 10_000  # events are immutable: enrichment made a new one


def _shipped() -> Path:
    return default_city_db()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_user_agent_and_location_are_parsed_once_per_distinct_value(system: System) -> None:
    for i in range(20):
        page(system, messageId=f"m{i}")
    engine = make_engine(system.settings.sqlalchemy_url)
    enricher = Enricher(UserAgentParser(), GeoLocator(_shipped()))
    BatchProcessor(engine, enricher).process(queued_envelopes_all(system))
    assert enricher._ua.cache_info().misses == 1
    assert enricher._location.cache_info().misses == 1
    assert enricher._campaign.cache_info().misses == 1
    engine.dispose()
