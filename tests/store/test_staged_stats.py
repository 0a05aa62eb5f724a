"""The stats' tables the worker writes (sessions, visitor_days, value_days,
value_visitors) are what the Python deltas of the stored events give, on SQLite and
PostgreSQL. On PostgreSQL the writer aggregates its staged events in the database
(``sightline.store.sql.staged_table``); the Python path is the reference: equal
timestamps in a session (the first staged one is its first event), client session ids,
replayed messages mixed with new ones (the stage keeps only the new events)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.store.columns import EventColumns
from sightline.store.db import make_engine
from sightline.store.products import create_product
from sightline.store.rollups import record_visitor_days
from sightline.store.schema import events, sessions, value_days, value_visitors, visitor_days
from sightline.store.sessions import record_sessions
from sightline.store.writer import write_batch
from tests.harness import System

PAGES = ["/", "/pricing", "/docs", "/blog"]
TABLES = (sessions, visitor_days, value_days, value_visitors)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _message(rng: random.Random, n: int, client: set[str]) -> dict[str, Any]:
    visitor = rng.randrange(6)
    who: dict[str, str] = {"anonymousId": f"anon-{visitor}"}
    if visitor % 3 == 0:
        who["userId"] = f"user-{visitor}"
    # Few distinct times: many events of a session share their timestamp.
    when = START + timedelta(minutes=rng.choice([0, 0, 5, 20, 90, 600]), days=rng.randrange(2))
    message_id = f"m-{n:05d}"
    context: dict[str, Any] = {
        "ip": "81.2.69.142",
        "page": {"url": f"https://shop.example{rng.choice(PAGES)}", "path": rng.choice(PAGES)},
    }
    if rng.random() < 0.2:
        context["sessionId"] = f"client-{visitor}-{rng.randrange(2)}"
        client.add(message_id)
    kind = rng.choice(["page", "track", "screen"])
    body: dict[str, Any] = {
        **who,
        "type": kind,
        "messageId": message_id,
        "timestamp": when.isoformat(),
        "context": context,
    }
    if kind == "track":
        body["event"] = rng.choice(["Signed Up", "Added to Cart"])
    else:
        body["name"] = "Home"
    return body


def _table(conn: sa.Connection, table: sa.Table) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in conn.execute(sa.select(table))}


def test_the_stats_tables_are_the_python_deltas_of_the_stored_events(system: System) -> None:
    rng = random.Random(7)
    client: set[str] = set()
    messages = [_message(rng, n, client) for n in range(300)]
    for start in range(0, 200, 50):
        r = system.send("/v1/batch", {"batch": messages[start : start + 50]})
        assert r.status_code == 200, r.text
        system.work()
    # Replays mixed with new messages: only the new ones count.
    r = system.send("/v1/batch", {"batch": messages[150:300]})
    assert r.status_code == 200, r.text
    system.work()
    with system.engine.connect() as conn:
        written = {table.name: _table(conn, table) for table in TABLES}
        assert all(written.values())
        rows = [
            dict(r._mapping) for r in conn.execute(sa.select(events).order_by(events.c.message_id))
        ]
        assert len(rows) == 300
        assigned = {r["id"] for r in rows if r["message_id"] not in client}
        for table in TABLES:
            conn.execute(sa.delete(table))
        # Not the writer's staged list: the deltas are computed here.
        record_sessions(conn, EventColumns.from_rows(rows), assigned)
        record_visitor_days(conn, EventColumns.from_rows(rows))
        expected = {table.name: _table(conn, table) for table in TABLES}
        conn.rollback()
    for table in TABLES:
        assert written[table.name] == expected[table.name], table.name


def test_two_batches_in_one_transaction_count_once_each(database_url: str) -> None:
    """The stage is emptied at commit: a second batch of the same transaction empties
    it first, or the stats would count the first batch twice."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id

    def item(n: int, batch: int) -> Normalised:
        at = START + timedelta(minutes=n)
        event = Event(
            id=f"e{n:04d}-{batch}",  # a replay is a new event id of the same message
            message_id=f"m{n}",
            product_id=product,
            name="Home",
            type=EventType.PAGE,
            timestamp=at,
            received_at=at,
            anonymous_id="anon",
            context={"page": {"path": "/"}},
        )
        return Normalised(events=(event,))

    with engine.begin() as conn:
        write_batch(conn, [item(n, 1) for n in range(5)])
        write_batch(conn, [item(n, 2) for n in range(3, 9)])  # 3 and 4 again: duplicates
    with engine.connect() as conn:
        assert conn.execute(sa.select(visitor_days.c.events)).scalars().all() == [9]
        assert conn.execute(sa.select(sessions.c.event_count)).scalars().all() == [9]
        counted = sa.select(value_days.c.events).where(value_days.c.dimension == "page")
        assert conn.execute(counted).scalars().all() == [9]
    engine.dispose()
