"""``EventRows``: the event rows the worker makes before a batch's transaction (in its
prepare step) store exactly what rows made in the transaction store; a row is taken only
for the very event it was made for, and as a copy, so a transaction that rolls back
leaves nothing of itself in the rows written again. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.store.db import make_engine
from sightline.store.products import create_product
from sightline.store.schema import events, sessions, visitor_days
from sightline.store.writer import EventRows, write_batch

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UA = {"browser_family": "Firefox", "os_family": "Linux", "device_type": "desktop"}


def _items(product_id: str) -> list[Normalised]:
    items = []
    for n in range(40):
        context: dict[str, Any] = {
            "page": {"url": f"https://shop.example/p{n % 3}?q=1"},
            "ua": UA,  # shared, as the enrichment shares it
            "campaign": {"referrer_host": "t.co", "channel": "social"},
        }
        if n % 5 == 0:
            context["sessionId"] = f"client-{n % 2}"
        event = Event(
            id=f"{product_id}-e{n}",
            message_id=f"m{n % 36}",  # the last four repeat earlier messages
            product_id=product_id,
            name="Home" if n % 2 else "Signed Up",
            type=EventType.PAGE if n % 2 else EventType.TRACK,
            timestamp=START + timedelta(minutes=7 * n),
            received_at=START + timedelta(minutes=7 * n),
            user_id=f"user-{n % 4}" if n % 3 == 0 else None,
            anonymous_id=f"anon-{n % 4}",
            session_id=context.get("sessionId"),
            properties={"n": n, "text": "é'\\", "list": [1, None]},
            context=context,
        )
        items.append(Normalised(events=(event,)))
    return items


def _stored(conn: sa.Connection, product_id: str) -> list[tuple[Any, ...]]:
    """The product's events but their ids; of the sessions Sightline gave (new ids),
    only that there is one."""
    kept = [c for c in events.c if c.name not in ("id", "product_id", "session_id")]
    query = sa.select(events.c.session_id, *kept).where(events.c.product_id == product_id)
    return sorted(
        (s if s is None or s.startswith("client-") else "given", *rest)
        for s, *rest in conn.execute(query)
    )


def _sessions(conn: sa.Connection) -> dict[str, tuple[int, int, int]]:
    """Each product's sessions, the events they count, and how many Sightline gave."""
    query = sa.select(
        sessions.c.product_id,
        sa.func.count(),
        sa.func.sum(sessions.c.event_count),
        sa.func.count().filter(sessions.c.assigned),
    ).group_by(sessions.c.product_id)
    return {p: (n, total, given) for p, n, total, given in conn.execute(query)}


def _visitor_days(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    query = sa.select(
        visitor_days.c.product_id, sa.func.count(), sa.func.sum(visitor_days.c.events)
    )
    return {
        p: (n, total) for p, n, total in conn.execute(query.group_by(visitor_days.c.product_id))
    }


def test_rows_made_before_the_transaction_store_what_rows_made_in_it_store(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        made_here, made_before = create_product(conn, "A").id, create_product(conn, "B").id
    items = _items(made_before)
    with engine.begin() as conn:
        plain = write_batch(conn, _items(made_here))
        early = write_batch(conn, items, made=EventRows(items))
    assert (early.stored, early.duplicates) == (plain.stored, plain.duplicates) == (36, 4)
    with engine.connect() as conn:
        assert _stored(conn, made_before) == _stored(conn, made_here)
        assert _sessions(conn)[made_before] == _sessions(conn)[made_here]
        assert _visitor_days(conn)[made_before] == _visitor_days(conn)[made_here]
    engine.dispose()


def test_a_row_is_taken_only_for_its_very_event_and_as_a_copy() -> None:
    items = _items("p")
    made = EventRows(items)
    event = items[1].events[0]
    found = made.get(event)
    assert found is not None
    row, texts = found
    assert row["type"] == "page" and row["page_path"] == "/p1" and row["browser"] == "Firefox"
    assert texts == (
        msgspec.json.encode(event.properties).decode(),
        msgspec.json.encode(event.context).decode(),
    )
    row["session_id"] = "set by a transaction"
    again = made.get(event)
    assert again is not None and again[0]["session_id"] is None
    # A message renamed (resolve_identities) or sanitised is a new event object.
    assert made.get(msgspec.structs.replace(event, user_id="someone else")) is None


def test_a_batch_written_again_after_a_rollback_is_stored_as_if_written_once(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        once, twice = create_product(conn, "once").id, create_product(conn, "twice").id
    items = _items(twice)
    made = EventRows(items)
    conn = engine.connect()
    with conn.begin() as transaction:
        write_batch(conn, items, made=made)  # sessions assigned, accounts looked up ...
        transaction.rollback()
    conn.close()
    with engine.begin() as conn:
        write_batch(conn, _items(once))
        write_batch(conn, items, made=made)
    with engine.connect() as conn:
        assert _stored(conn, twice) == _stored(conn, once)
        assert _sessions(conn)[twice] == _sessions(conn)[once]
        assert _sessions(conn)[once][1] == 36
        assert _visitor_days(conn)[twice] == _visitor_days(conn)[once]
    engine.dispose()
