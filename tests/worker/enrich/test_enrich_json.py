from __future__ import annotations

import msgspec

from worker.enrich import (
    GeoInfo,
    GeoLocator,
    UserAgentParser,
    default_city_db,
    parse_campaign,
)


def test_results_encode_to_json_context() -> None:
    """The worker embeds results in the event's JSON context as they are."""
    agent = UserAgentParser().parse("curl/8.7.1")
    with GeoLocator(default_city_db()) as locator:
        geo = locator.lookup("8.8.8.8")
    campaign = parse_campaign("https://example.com/?gclid=abc", None)

    decoded = msgspec.json.decode(msgspec.json.encode({"ua": agent, "geo": geo, "c": campaign}))

    assert decoded["ua"]["browser_family"] == "curl"
    assert decoded["ua"]["is_bot"] is True
    assert decoded["geo"]["country_code"] == "US"
    assert decoded["c"] == {
        "utm_source": None,
        "utm_medium": None,
        "utm_campaign": None,
        "utm_term": None,
        "utm_content": None,
        "click_ids": {"gclid": "abc"},
        "referrer_host": None,
        "referrer_name": None,
        "search_term": None,
        "channel": "paid",
    }
    assert msgspec.convert(decoded["geo"], GeoInfo) == geo
