"""``GET /api/v1/stats`` against real SQLite and PostgreSQL: counts and uniques per day,
every breakdown, bots, sessions (the 30-minute rule, out-of-order arrival, a client's
own session id), bounce rate, and who may read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from sightline.store.schema import sessions
from sightline.store.stats import StatsQuery, traffic_stats, uses_rollup
from tests.api.support import bearer, get, token
from tests.harness import System, basic

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GB_ADDRESS = "81.2.69.142"  # in the shipped GeoIP test database: GB
STATS = "/api/v1/stats"
RANGE = {"from": "2026-10-05T00:00:00Z", "to": "2026-10-08T00:00:00Z", "interval": "day"}


def page(
    system: System,
    visitor: dict[str, str],
    when: str,
    path: str,
    *,
    agent: str = CHROME_WIN,
    referrer: str | None = None,
    query: str = "",
    **context: Any,
) -> None:
    message_id = context.pop("messageId", None)
    body = {
        **visitor,
        **({"messageId": message_id} if message_id else {}),
        "name": path,
        "timestamp": when,
        "context": {
            "ip": GB_ADDRESS,
            "page": {"url": f"https://shop.example{path}{query}", "path": path}
            | ({"referrer": referrer} if referrer else {}),
            **context,
        },
    }
    r = system.send("/v1/page", body, headers={"User-Agent": agent})
    assert r.status_code == 200, r.text


def track(system: System, visitor: dict[str, str], when: str, event: str) -> None:
    body = {**visitor, "event": event, "timestamp": when}
    r = system.send("/v1/track", body, headers={"User-Agent": CHROME_WIN})
    assert r.status_code == 200, r.text


A, B, C, D = ({"anonymousId": f"anon-{x}"} for x in "abcd")
U1 = {"userId": "u1"}
BOT = {"anonymousId": "anon-bot"}


@pytest.fixture
def traffic(system: System) -> System:
    """Three days of visits (see the test for what each adds up to)."""
    day1, day2, day3 = (f"2026-10-0{d}T" for d in (5, 6, 7))
    # Day 1: a two-page session from a newsletter; a bounce on an iPhone; a signed-in user
    # who views one page and signs up (one page, not a bounce); Googlebot.
    page(
        system,
        A,
        day1 + "10:00:00Z",
        "/pricing",
        referrer="https://www.google.com/",
        query="?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        messageId="a-first",
    )
    page(system, A, day1 + "10:10:00Z", "/docs")
    page(system, B, day1 + "11:00:00Z", "/", agent=IPHONE)
    page(system, U1, day1 + "12:00:00Z", "/pricing")
    track(system, U1, day1 + "12:05:00Z", "Signed Up")
    page(system, BOT, day1 + "13:00:00Z", "/", agent=GOOGLEBOT)
    # Day 2: 31 minutes apart: two sessions, two bounces.
    page(system, A, day2 + "09:00:00Z", "/")
    page(system, A, day2 + "09:31:00Z", "/pricing")
    system.work()
    # Out of order, across batches: 20:00 and 20:20 first, then 19:45 (15 minutes before
    # the session's start: it joins it), then 19:00 (45 before: a session of its own).
    page(system, C, day2 + "20:00:00Z", "/docs")
    page(system, C, day2 + "20:20:00Z", "/docs/install")
    system.work()
    page(system, C, day2 + "19:45:00Z", "/")
    system.work()
    page(system, C, day2 + "19:00:00Z", "/")
    # Day 3: the client's own session id, kept: three hours apart, still one session.
    page(system, D, day3 + "10:00:00Z", "/", sessionId="client-1")
    page(system, D, day3 + "13:00:00Z", "/docs", sessionId="client-1")
    system.work()
    return system


def stats(system: System, credential: str, **params: Any) -> dict[str, Any]:
    r = get(system, STATS, credential, **(RANGE | params))
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def counts(point: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        point[k]
        for k in ("events", "pageviews", "users", "visitors", "sessions", "bounces", "bounce_rate")
    )


def test_counts_uniques_sessions_and_bounce_rate_per_day(traffic: System) -> None:
    result = stats(traffic, token(traffic, traffic.product.id))
    assert result["product_id"] == traffic.product.id and result["include_bots"] is False
    by_day = {p["start"]: counts(p) for p in result["series"]}
    assert by_day == {
        # events, page views, users, visitors, sessions, bounces, bounce rate
        "2026-10-05T00:00:00Z": (5, 4, 1, 3, 3, 1, 0.3333),
        "2026-10-06T00:00:00Z": (6, 6, 0, 2, 4, 3, 0.75),
        "2026-10-07T00:00:00Z": (2, 2, 0, 1, 1, 0, 0.0),
    }
    # Uniques over the whole range, not summed per day (anon-a came on two days).
    assert counts(result["totals"]) == (13, 12, 1, 5, 8, 4, 0.5)


def test_bots_are_left_out_unless_included(traffic: System) -> None:
    key = token(traffic, traffic.product.id)
    result = stats(traffic, key, bots="include", breakdown="browser")
    assert result["include_bots"] is True
    assert counts(result["series"][0]) == (6, 5, 1, 4, 4, 2, 0.5)
    assert counts(result["totals"]) == (14, 13, 1, 6, 9, 5, 0.5556)
    assert {r["value"] for r in result["breakdowns"][0]["rows"]} == {
        "Chrome",
        "Mobile Safari",
        "Googlebot",
    }
    excluded = stats(traffic, key, breakdown="browser")["breakdowns"][0]["rows"]
    assert "Googlebot" not in {r["value"] for r in excluded}
    assert get(traffic, STATS, key, bots="maybe").status_code == 400


def test_other_intervals(traffic: System) -> None:
    key = token(traffic, traffic.product.id)
    hourly = stats(traffic, key, interval="hour")["series"]
    assert len(hourly) == 72
    at_ten = next(p for p in hourly if p["start"] == "2026-10-05T10:00:00Z")
    assert counts(at_ten) == (2, 2, 0, 1, 1, 0, 0.0)
    # 2026-10-05 is a Monday: one ISO week holds the range.
    [week] = stats(traffic, key, interval="week")["series"]
    assert week["start"] == "2026-10-05T00:00:00Z" and week["events"] == 13
    narrow = stats(traffic, key, **{"from": "2026-10-06T19:30:00Z", "to": "2026-10-06T21:00:00Z"})
    assert counts(narrow["totals"]) == (3, 3, 0, 1, 1, 0, 0.0)


def rows(result: dict[str, Any]) -> dict[str, dict[Any, tuple[int, int, int]]]:
    return {
        b["by"]: {r["value"]: (r["events"], r["pageviews"], r["visitors"]) for r in b["rows"]}
        for b in result["breakdowns"]
    }


def test_each_breakdown(traffic: System) -> None:
    key = token(traffic, traffic.product.id)
    every = "page,referrer,channel,utm_source,utm_medium,utm_campaign,country,browser,os"
    result = stats(traffic, key, breakdown=[every, "device", "event"], limit=100)
    found = rows(result)
    assert list(found) == [*every.split(","), "device", "event"]
    # (events, page views, visitors); None: events without the dimension (the track call)
    assert found["page"] == {
        "/": (5, 5, 4),
        "/docs": (3, 3, 3),
        "/pricing": (3, 3, 2),
        None: (1, 0, 1),
        "/docs/install": (1, 1, 1),
    }
    assert found["referrer"] == {None: (12, 11, 5), "www.google.com": (1, 1, 1)}
    assert found["channel"] == {"direct": (11, 11, 5), None: (1, 0, 1), "email": (1, 1, 1)}
    assert found["utm_source"] == {None: (12, 11, 5), "newsletter": (1, 1, 1)}
    assert found["utm_medium"] == {None: (12, 11, 5), "email": (1, 1, 1)}
    assert found["utm_campaign"] == {None: (12, 11, 5), "spring": (1, 1, 1)}
    assert found["country"] == {"GB": (12, 12, 5), None: (1, 0, 1)}
    assert found["browser"] == {"Chrome": (12, 11, 4), "Mobile Safari": (1, 1, 1)}
    assert found["os"] == {"Windows": (12, 11, 4), "iOS": (1, 1, 1)}
    assert found["device"] == {"desktop": (12, 11, 4), "mobile": (1, 1, 1)}
    assert found["event"]["Signed Up"] == (1, 0, 1) and found["event"]["/"] == (5, 5, 4)
    # Most visitors first, then most events; limit cuts each breakdown.
    top = stats(traffic, key, breakdown="page", limit=2)["breakdowns"][0]["rows"]
    assert [r["value"] for r in top] == ["/", "/docs"]
    assert get(traffic, STATS, key, breakdown="shoe size").status_code == 400


def test_sessions_follow_the_thirty_minute_rule(traffic: System) -> None:
    c = sessions.c
    found = traffic.sql(
        sessions.select().where(c.visitor.in_(("anon-a", "anon-c"))).order_by(c.started_at)
    )
    spans = [
        (
            r.visitor,
            r.started_at.strftime("%d %H:%M"),
            r.ended_at.strftime("%d %H:%M"),
            r.event_count,
            r.page_count,
            r.entry_page,
        )
        for r in found
    ]
    assert spans == [
        ("anon-a", "05 10:00", "05 10:10", 2, 2, "/pricing"),
        # 09:00 and 09:31: 31 minutes apart, two sessions.
        ("anon-a", "06 09:00", "06 09:00", 1, 1, "/"),
        ("anon-a", "06 09:31", "06 09:31", 1, 1, "/pricing"),
        # Stored last, 45 minutes before the session below started: its own.
        ("anon-c", "06 19:00", "06 19:00", 1, 1, "/"),
        # 20:00 and 20:20 stored first; 19:45 arrived later and extended it backward
        # (its entry page is now the 19:45 one).
        ("anon-c", "06 19:45", "06 20:20", 3, 3, "/"),
    ]
    events = {(e.anonymous_id, e.timestamp.strftime("%d %H:%M")): e for e in traffic.events()}
    session_of = {key: e.session_id for key, e in events.items()}
    assert session_of["anon-c", "06 19:45"] == session_of["anon-c", "06 20:20"]
    assert session_of["anon-c", "06 19:00"] != session_of["anon-c", "06 19:45"]
    assert session_of["anon-a", "06 09:00"] != session_of["anon-a", "06 09:31"]
    # A client's own session id is kept, and is the session: one, three hours long.
    assert session_of["anon-d", "07 10:00"] == session_of["anon-d", "07 13:00"] == "client-1"
    [client] = traffic.sql(sessions.select().where(c.visitor == "anon-d"))
    assert client.session_id == "client-1" and client.assigned is False
    assert client.event_count == 2 and client.page_count == 2


def test_a_message_stored_twice_counts_once(traffic: System) -> None:
    key = token(traffic, traffic.product.id)
    before = stats(traffic, key)["totals"]
    page(
        system=traffic, visitor=A, when="2026-10-05T10:00:00Z", path="/pricing", messageId="a-first"
    )
    traffic.work()
    assert stats(traffic, key)["totals"] == before
    [first] = traffic.sql(
        sessions.select().where(sessions.c.visitor == "anon-a").order_by(sessions.c.started_at)
    )[:1]
    assert first.event_count == 2


def test_who_may_read_stats(traffic: System) -> None:
    other = traffic.create_product("other")
    mine, theirs, admin = (
        token(traffic, traffic.product.id),
        token(traffic, other.id),
        token(traffic),
    )
    params = RANGE | {"product": traffic.product.id}
    # No credential; the write key (Basic, header or bearer) never reads.
    assert traffic.client.get(STATS, params=params).status_code == 401
    for headers in (
        basic(traffic.write_key),
        bearer(traffic.write_key),
        {"X-Write-Key": traffic.write_key},
    ):
        r = traffic.client.get(STATS, params=params, headers=headers)
        assert r.status_code in (401, 403), (headers, r.status_code)
    assert (
        traffic.client.get(STATS, params=params, headers=basic(traffic.write_key)).status_code
        == 403
    )
    # Another product's read key: refused this product, sees nothing of it by default.
    assert get(traffic, STATS, theirs, **params).status_code == 403
    empty = stats(traffic, theirs)
    assert empty["product_id"] == other.id and counts(empty["totals"]) == (0, 0, 0, 0, 0, 0, None)
    # The product's read key and an admin (this product, or every product).
    assert stats(traffic, mine)["totals"]["events"] == 13
    assert stats(traffic, admin, product=traffic.product.id)["totals"]["events"] == 13
    everything = stats(traffic, admin)
    assert everything["product_id"] is None and everything["totals"]["events"] == 13


def test_bad_parameters(system: System) -> None:
    key = token(system, system.product.id)
    for params in (
        {"from": "yesterday"},
        {"from": "2026-10-08T00:00:00Z", "to": "2026-10-01T00:00:00Z"},
        {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"interval": "minute"},
        {"interval": "hour", "from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        {"limit": "0"},
    ):
        r = get(system, STATS, key, **params)
        assert r.status_code == 400, params
        assert r.json()["errors"], params
    # Defaults: the last 30 days, per day.
    r = get(system, STATS, key)
    assert r.status_code == 200 and len(r.json()["series"]) in (30, 31)


@pytest.mark.parametrize("interval", ["day", "week"])
def test_the_daily_rollup_agrees_with_the_events(traffic: System, interval: str) -> None:
    """Whole UTC days are read from visitor_days; the same numbers as from the events."""
    for product_id in (traffic.product.id, None):
        for bots in (False, True):
            query = StatsQuery(
                product_id=product_id,
                start=datetime(2026, 10, 5, tzinfo=UTC),
                end=datetime(2026, 10, 8, tzinfo=UTC),
                interval=interval,
                include_bots=bots,
            )
            assert uses_rollup(query)
            raw = msgspec.structs.replace(query, rollups=False)
            assert not uses_rollup(raw)
            with traffic.engine.connect() as conn:
                assert traffic_stats(conn, query) == traffic_stats(conn, raw)
