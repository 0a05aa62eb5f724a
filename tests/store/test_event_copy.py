"""The events the writer stores are the events it was given, value for value, on SQLite
and PostgreSQL. PostgreSQL's writer sends them to its stage by binary ``COPY``
(``sightline.store.writer._copy_events``), and a batch with a value binary ``COPY``
refuses (a time without a time zone, a number where text goes) by text ``COPY``, as
before: stored all the same, not failed half-way through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.store.db import make_engine
from sightline.store.products import create_product
from sightline.store.schema import events
from sightline.store.writer import write_batch

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _utc(value: Any) -> Any:
    """A time as a UTC instant; other values as they are."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value


def _stored(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(sa.select(events)).mappings()
    return {row["message_id"]: {k: _utc(v) for k, v in row.items()} for row in rows}


def _event(product: str, n: int, **fields: Any) -> Event:
    at = START + timedelta(minutes=n)
    values: dict[str, Any] = {
        "id": f"e{n:04d}",
        "message_id": f"m{n}",
        "product_id": product,
        "name": "Home",
        "type": EventType.PAGE,
        "timestamp": at,
        "received_at": at,
        **fields,
    }
    return Event(**values)


def test_every_column_is_stored_as_given(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id
    given = [
        _event(
            product,
            1,
            sent_at=START - timedelta(seconds=3),
            original_timestamp=START - timedelta(microseconds=1),
            user_id="user-é",
            anonymous_id="anon\tone\nline\\",  # what text COPY escapes
            account_id="acct",
            session_id="s-1",
            entity_type="lead",
            entity_id="42",
            recording_id="r",
            properties={"n": 1.5, "big": 2**60, "list": [1, "two", None], "nested": {"a": True}},
            context={"page": {"path": "/a b", "referrer": "https://example.org/x"}, "e": "\u2603"},
            dialect="segment",
            is_bot=True,
            is_unused=True,
        ),
        _event(product, 2),  # the optional columns left out: NULL, and empty JSON objects
    ]
    with engine.begin() as conn:
        write_batch(conn, [Normalised(events=(e,)) for e in given])
    with engine.connect() as conn:
        stored = _stored(conn)
    for event in given:
        row = stored[event.message_id]
        for name, value in ((c.name, getattr(event, c.name, None)) for c in events.columns):
            if name in ("properties", "context", "type") or not hasattr(event, name):
                continue
            assert row[name] == _utc(value), name
        assert row["type"] == event.type.value
        assert row["properties"] == event.properties
        assert row["context"] == event.context
    engine.dispose()


def test_a_batch_binary_copy_refuses_is_stored_as_text(database_url: str) -> None:
    """A naive time and a number in a text column: what the dialects never give, but
    text ``COPY`` stored, and a batch failing in the middle of its ``COPY`` would be
    retried for ever."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id
    naive = datetime(2026, 11, 2, 10, 30)
    odd = _event(product, 1, sent_at=naive, entity_type="lead", entity_id=42)
    plain = _event(product, 2)
    with engine.begin() as conn:
        write_batch(conn, [Normalised(events=(odd,)), Normalised(events=(plain,))])
    with engine.connect() as conn:
        stored = _stored(conn)
    assert set(stored) == {"m1", "m2"}
    assert stored["m1"]["entity_id"] == "42"
    assert stored["m1"]["sent_at"] is not None
    assert stored["m2"]["timestamp"] == plain.timestamp
    engine.dispose()
