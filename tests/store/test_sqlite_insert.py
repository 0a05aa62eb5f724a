"""SQLite's events insert (``writer.insert_sqlite_events``): a batch goes as few
multi-row statements (2,048, 1,024, 256, 64, 16, 4 and 1 rows; fewer when the library allows
fewer bound values), and stores exactly what one ``executemany`` of the same rows stores,
new rows only (``ON CONFLICT DO NOTHING``), counted."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.model import Event, EventType
from sightline.store.columns import EVENT_COLUMNS, EventColumns
from sightline.store.db import make_engine
from sightline.store.writer import _sqlite_event_columns, insert_sqlite_events

START = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


def _rows(count: int, prefix: str) -> EventColumns:
    made = []
    for n in range(count):
        zone = timezone(timedelta(hours=n % 3 - 1))
        event = Event(
            id=str(uuid.UUID(int=n + (hash(prefix) % 10**6) * 10**7)),
            message_id=f"{prefix}-{n}",
            product_id="p",
            name=f"E{n % 7}",
            type=EventType.PAGE if n % 2 else EventType.TRACK,
            timestamp=(START + timedelta(seconds=n)).astimezone(zone),
            received_at=START.astimezone(zone),
            user_id=f"u{n % 5}" if n % 4 else None,
            anonymous_id=f"a{n % 11}",
            properties={"n": n, "text": "é'\\", "list": [1, None]},
            context={"page": {"url": f"https://x.test/{n}"}} if n % 3 else {},
        )
        made.append(event)
    return EventColumns.of(made)


def _stored(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        order = "ORDER BY message_id"
        return list(conn.exec_driver_sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events {order}"))


_ONE_ROW = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}) "
    "ON CONFLICT (product_id, message_id) DO NOTHING"
)


def _reference(engine: sa.Engine, rows: EventColumns) -> None:
    """The same values by ``executemany``, one row per execution."""
    with engine.begin() as conn:
        conn.exec_driver_sql(_ONE_ROW, list(zip(*_sqlite_event_columns(rows), strict=True)))


@pytest.mark.parametrize("variables", [None, 999])
def test_a_batch_in_multi_row_statements_stores_what_row_by_row_stores(
    sqlite_template: Path, tmp_path: Path, variables: int | None
) -> None:
    engines = []
    for name in ("rows", "one_by_one"):
        target = tmp_path / f"{name}.db"
        target.write_bytes(sqlite_template.read_bytes())
        engines.append(make_engine(f"sqlite:///{target}"))
    together, one_by_one = engines
    if variables is not None:  # an older library's bound: 999 values, 32 rows of 31

        @sa.event.listens_for(together, "connect")
        def limit(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)

    rows = _rows(1024 + 256 + 2 * 64 + 3 * 4 + 3, "m")  # every size, some twice
    statements: list[int] = []

    @sa.event.listens_for(together, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            statements.append(statement.count("), ("))

    with together.begin() as conn:
        assert insert_sqlite_events(conn, rows) == len(rows)
    rows_per_statement = [n + 1 for n in statements]
    if variables is None:
        assert rows_per_statement == [1024, 256, 64, 64, 4, 4, 4, 1, 1, 1]
    else:
        assert max(rows_per_statement) == 16 and sum(rows_per_statement) == len(rows)
    _reference(one_by_one, rows)
    assert _stored(together) == _stored(one_by_one)

    # Again, with half of them already stored: only the new ones count and go in.
    again = rows.take(range(0, len(rows), 2)) + _rows(300, "n")
    statements.clear()
    with together.begin() as conn:
        assert insert_sqlite_events(conn, again) == 300
    _reference(one_by_one, again)
    assert _stored(together) == _stored(one_by_one)
    assert len(_stored(together)) == len(rows) + 300
    for engine in engines:
        engine.dispose()
