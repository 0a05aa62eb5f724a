"""``EventRows``: the event rows the worker makes before a batch's transaction (in its
prepare step), and on SQLite what they add to the rollups, store exactly what rows made
in the transaction store, the batch new, partly replayed or holding a message twice; a
row is taken only for the very event it was made for, and in lists of its own, so a
transaction that rolls back leaves nothing of itself in the rows written again. SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.store.db import make_engine
from sightline.store.products import create_product
from sightline.store.schema import events, sessions, value_days, value_visitors, visitor_days
from sightline.store.writer import EventRows, write_batch

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UA = {"browser_family": "Firefox", "os_family": "Linux", "device_type": "desktop"}


def _items(product_id: str, count: int = 40, wrap: int = 36, batch: int = 0) -> list[Normalised]:
    """``count`` events of messages m0, m1 ... m``wrap - 1``, m0, m1 ..."""
    items = []
    for n in range(count):
        context: dict[str, Any] = {
            "page": {"url": f"https://shop.example/p{n % 3}?q=1"},
            "ua": UA,  # shared, as the enrichment shares it
            "campaign": {"referrer_host": "t.co", "channel": "social"},
        }
        if n % 5 == 0:
            context["sessionId"] = f"client-{n % 2}"
        event = Event(
            id=f"{product_id}-e{n}-{batch}",
            message_id=f"m{n % wrap}",
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


def _rollups(conn: sa.Connection, product_id: str) -> list[set[tuple[Any, ...]]]:
    """The product's rows of the three rollups."""
    return [
        {
            tuple(row)
            for row in conn.execute(
                sa.select(*(c for c in table.c if c.name != "product_id")).where(
                    table.c.product_id == product_id
                )
            )
        }
        for table in (visitor_days, value_days, value_visitors)
    ]


@pytest.mark.parametrize("count", [36, 40], ids=["new", "a-message-twice"])
def test_rows_made_before_the_transaction_store_what_rows_made_in_it_store(
    database_url: str, count: int
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        made_here, made_before = create_product(conn, "A").id, create_product(conn, "B").id
    items = _items(made_before, count)
    dialect = engine.dialect.name
    with engine.begin() as conn:
        plain = write_batch(conn, _items(made_here, count))
        early = write_batch(conn, items, made=EventRows(items, dialect=dialect))
    assert (early.stored, early.duplicates) == (plain.stored, plain.duplicates)
    assert (early.stored, early.duplicates) == (36, count - 36)
    # Then m30 ... m43: the new ones only count (PostgreSQL: through the stage).
    again = _items(made_here, 44, wrap=44, batch=1)[30:]
    again_made = _items(made_before, 44, wrap=44, batch=1)[30:]
    with engine.begin() as conn:
        write_batch(conn, again)
        write_batch(conn, again_made, made=EventRows(again_made, dialect=dialect))
    with engine.connect() as conn:
        assert _stored(conn, made_before) == _stored(conn, made_here)
        assert len(_stored(conn, made_here)) == 44
        assert _sessions(conn)[made_before] == _sessions(conn)[made_here]
        assert _rollups(conn, made_before) == _rollups(conn, made_here)
    engine.dispose()


def test_a_row_is_taken_only_for_its_very_event_and_as_a_copy() -> None:
    items = _items("p")
    made = EventRows(items)
    event = items[1].events[0]
    assert made.index(event) == 1
    rows, every_row = made.take([event])
    assert not every_row
    (row,) = rows.rows()
    assert row["type"] == "page" and row["page_path"] == "/p1" and row["browser"] == "Firefox"
    assert (rows.texts["properties"], rows.texts["context"]) == (
        [msgspec.json.encode(event.properties).decode()],
        [msgspec.json.encode(event.context).decode()],
    )
    every = [e for item in items for e in item.events]
    for taken in (rows, made.take(every)[0]):
        for i in range(len(taken)):
            taken["session_id"][i] = taken["account_id"][i] = "set by a transaction"
        again, _ = made.take([event])
        assert again["session_id"] == [None] and again["account_id"] == [None]
    # A message renamed (resolve_identities) or sanitised is a new event object: its row
    # is made again, in its place.
    renamed = msgspec.structs.replace(event, user_id="someone else")
    assert made.index(renamed) is None
    first = items[0].events[0]
    rows, every_row = made.take([renamed, first])
    assert not every_row
    assert rows["user_id"] == ["someone else", first.user_id]
    assert rows["id"] == [event.id, first.id]
    assert rows["page_path"] == ["/p1", "/p0"]
    every[1] = renamed  # (as many events as made)
    rows, every_row = made.take(every)
    assert not every_row
    assert rows["user_id"][:3] == [e.user_id for e in every[:3]]


def test_every_row_made_is_every_event_in_any_order_each_once() -> None:
    items = _items("p", 6)
    made = EventRows(items)
    events_ = [item.events[0] for item in items]
    for chosen, every_row in (
        (events_, True),
        (events_[::-1], True),
        (events_[1:], False),
        (events_[:3], False),
    ):
        rows, taken_every_row = made.take(chosen)
        assert taken_every_row is every_row
        assert rows["id"] == [e.id for e in chosen]


def test_a_batch_written_again_after_a_rollback_is_stored_as_if_written_once(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        once, twice = create_product(conn, "once").id, create_product(conn, "twice").id
    items = _items(twice, 36)
    made = EventRows(items, dialect=engine.dialect.name)
    conn = engine.connect()
    with conn.begin() as transaction:
        write_batch(conn, items, made=made)  # sessions assigned, accounts looked up ...
        transaction.rollback()
    conn.close()
    with engine.begin() as conn:
        write_batch(conn, _items(once, 36))
        write_batch(conn, items, made=made)
    with engine.connect() as conn:
        assert _stored(conn, twice) == _stored(conn, once)
        assert _sessions(conn)[twice] == _sessions(conn)[once]
        assert _sessions(conn)[once][1] == 36
        assert _rollups(conn, twice) == _rollups(conn, once)
    engine.dispose()
