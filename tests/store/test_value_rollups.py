"""The breakdowns' rollups (``value_days``, ``value_visitors``) against the events they
summarise, on SQLite and PostgreSQL: random events across days (and a 63-day period
boundary), products, bots and every breakdown, written by the real worker; the exact
numbers of ``COUNT(DISTINCT ...)`` over the raw events for random whole-day ranges;
the same after an erasure (the person's rows gone); the migration's backfill gives
the rows the worker wrote."""

from __future__ import annotations

import importlib.util
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.store.erasure import CLI, forget_user
from sightline.store.rollups import PERIOD_DAYS, day_number
from sightline.store.schema import value_days, value_visitors
from sightline.store.stats import (
    BREAKDOWNS,
    StatsQuery,
    breakdown,
    traffic_totals,
    uses_value_rollup,
)
from tests.harness import System

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
PAGES = ["/", "/pricing", "/docs", "/docs/install", "/blog"]
REFERRERS = [None, "https://www.google.com/", "https://news.ycombinator.com/"]
QUERIES = ["", "?utm_source=newsletter&utm_medium=email&utm_campaign=nov", "?gclid=x"]
IPS = ["81.2.69.142", "8.8.8.8"]
DAYS = 12
MIGRATION = (
    Path(__file__).resolve().parents[2]
    / "sightline/store/migrations/versions/0008_value_rollups.py"
)


def _first_day() -> datetime:
    """A UTC day a few days before a ``value_visitors`` period boundary (in the past:
    the worker clamps times in the future)."""
    boundary = day_number(datetime(2026, 10, 1, tzinfo=UTC)) // PERIOD_DAYS * PERIOD_DAYS
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=boundary - 5)


def _message(rng: random.Random, n: int, first: datetime) -> dict[str, Any]:
    visitor = rng.randrange(25)
    who: dict[str, str] = {"anonymousId": f"anon-{visitor}"}
    if visitor % 4 == 0 and rng.random() < 0.7:
        who["userId"] = f"user-{visitor}"
    when = first + timedelta(seconds=rng.uniform(0, DAYS * 86_400))
    path = rng.choice(PAGES)
    page: dict[str, Any] = {"url": f"https://shop.example{path}{rng.choice(QUERIES)}"}
    if rng.random() < 0.9:
        page["path"] = path
    referrer = rng.choice(REFERRERS)
    if referrer:
        page["referrer"] = referrer
    kind = rng.choices(["page", "screen", "track"], [6, 1, 3])[0]
    body: dict[str, Any] = {
        **who,
        "type": kind,
        "messageId": f"m-{n}",
        "timestamp": when.isoformat(),
        "context": {
            "ip": rng.choice(IPS),
            "userAgent": rng.choice(AGENTS),
            **({"page": page} if kind != "screen" else {}),
        },
    }
    if kind == "track":
        body["event"] = rng.choice(["Signed Up", "Added to Cart"])
    else:
        body["name"] = path
    return body


def _send(system: System, seed: int, count: int) -> None:
    rng = random.Random(seed)
    first = _first_day()
    batch = [_message(rng, seed * 100_000 + n, first) for n in range(count)]
    for start in range(0, count, 100):
        r = system.send("/v1/batch", {"batch": batch[start : start + 100]})
        assert r.status_code == 200 and not r.json().get("rejected"), r.text
    system.work()


def _assert_agrees(system: System, rng: random.Random, products: list[str | None]) -> int:
    """Random whole-day ranges: the totals and every breakdown from the rollups are the
    events' ones."""
    first = _first_day()
    checked = 0
    with system.engine.connect() as conn:
        for _ in range(8):
            a, b = sorted(rng.sample(range(DAYS + 1), 2))
            for product_id in products:
                for bots in (False, True):
                    query = StatsQuery(
                        product_id=product_id,
                        start=first + timedelta(days=a),
                        end=first + timedelta(days=b),
                        include_bots=bots,
                        limit=100,
                    )
                    raw = msgspec.structs.replace(query, rollups=False)
                    assert uses_value_rollup(query) and not uses_value_rollup(raw)
                    assert traffic_totals(conn, query) == traffic_totals(conn, raw)
                    for by in BREAKDOWNS:
                        found = breakdown(conn, query, by)
                        assert found == breakdown(conn, raw, by), (a, b, product_id, bots, by)
                        checked += len(found.rows)
    return checked


def test_the_rollups_give_the_events_exact_numbers(system: System) -> None:
    other = system.create_product("other")
    _send(system, 1, 500)
    # Another product's events; some of the same visitor ids (counted once over both).
    other_system_key = other.write_keys[0]
    rng = random.Random(2)
    first = _first_day()
    batch = [_message(rng, 900_000 + n, first) for n in range(100)]
    r = system.send("/v1/batch", {"batch": batch}, key=other_system_key)
    assert r.status_code == 200, r.text
    system.work()
    # The same messages again: stored once, counted once.
    _send(system, 1, 200)
    products: list[str | None] = [system.product.id, other.id, None]
    assert _assert_agrees(system, random.Random(3), products) > 500
    # A range across the period boundary reads two periods per value and visitor.
    assert {r.period for r in system.sql(sa.select(value_visitors.c.period))} == {
        day_number(first) // PERIOD_DAYS,
        day_number(first) // PERIOD_DAYS + 1,
    }


def test_an_erasure_takes_the_person_out_of_the_rollups(system: System) -> None:
    _send(system, 4, 400)
    # user-0 logs in from anon-0: their anonymous events are theirs too.
    r = system.send("/v1/identify", {"userId": "user-0", "anonymousId": "anon-0"})
    assert r.status_code == 200
    system.work()
    visitors = value_visitors.c.visitor
    assert system.sql(sa.select(sa.func.count()).where(visitors.in_(("user-0", "anon-0"))))[0][0]
    erasure = forget_user(system.engine, system.product.id, "user-0", requested_by=CLI)
    assert erasure.receipt.deleted["value_visitors"] > 0
    gone = sa.select(sa.func.count()).where(visitors.in_(("user-0", "anon-0")))
    assert system.sql(gone)[0][0] == 0
    # The events' counts went too: every breakdown still agrees with what is stored.
    assert _assert_agrees(system, random.Random(5), [system.product.id]) > 100
    assert system.sql(sa.select(sa.func.count()).where(value_days.c.events <= 0))[0][0] == 0


def _load_migration() -> Any:
    spec = importlib.util.spec_from_file_location("value_rollups_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(system: System, table: sa.Table) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in system.sql(sa.select(table))}


def test_the_migration_backfills_what_the_worker_writes(system: System) -> None:
    _send(system, 6, 300)
    written = {t.name: _rows(system, t) for t in (value_days, value_visitors)}
    assert all(written.values())
    with system.engine.begin() as conn:
        conn.execute(sa.delete(value_days))
        conn.execute(sa.delete(value_visitors))
        _load_migration().backfill(conn)
    assert {t.name: _rows(system, t) for t in (value_days, value_visitors)} == written
