"""``sql.bulk_insert`` / ``execute_rows``: one statement for many rows on PostgreSQL
(arrays), ``executemany`` on SQLite, with the same stored values: JSON goes as JSON
text, so a JSON array stays one value (not a dimension of the SQL array) and a JSON
``null`` stays distinct from SQL ``NULL``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from sightline.store.db import make_engine
from sightline.store.schema import JSON, Time
from sightline.store.sql import bulk_insert, execute_columns, execute_rows, sqlite_times

_metadata = sa.MetaData()
_scratch = sa.Table(
    "scratch_bulk",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(8), nullable=False),
    sa.Column("doc", JSON, nullable=True),
)
_COLUMNS = ("id", "name", "doc")
VALUES: list[Any] = [
    {"a": 1, "b": [1, 2.5, None]},
    ["x", ["nested", ["deeper"]]],
    [["a"], ["b"]],
    [],
    {},
    "text",
    7,
    1.5,
    True,
    None,  # JSON null (SQLAlchemy's rule for a JSON column)
    sa.JSON.NULL,  # JSON null, said explicitly
    sa.null(),  # SQL NULL
    "with 'quotes' and \\ and \u00e9",
]


def test_json_values_arrays_and_nulls_are_stored_as_given(database_url: str) -> None:
    engine = make_engine(database_url)
    _metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            insert = bulk_insert(conn, _scratch, _COLUMNS)
            statement = insert.on_conflict_do_update(
                index_elements=["id"], set_={"doc": insert.excluded.doc}
            )
            rows = [{"id": n, "name": f"r{n}", "doc": v} for n, v in enumerate(VALUES)]
            execute_rows(conn, statement, _COLUMNS, rows)
            # Again: the conflict path writes the same values.
            execute_rows(conn, statement, _COLUMNS, rows)
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(_scratch.c.id, _scratch.c.doc)).all())
            sql_nulls = set(
                conn.execute(sa.select(_scratch.c.id).where(_scratch.c.doc.is_(None))).scalars()
            )
    finally:
        _metadata.drop_all(engine)
        engine.dispose()
    assert stored == {
        n: None if v is sa.JSON.NULL or isinstance(v, sa.sql.elements.Null) else v
        for n, v in enumerate(VALUES)
    }
    assert sql_nulls == {n for n, v in enumerate(VALUES) if isinstance(v, sa.sql.elements.Null)}


_counts = sa.Table(
    "scratch_counts",
    _metadata,
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=True),
)


def test_an_upsert_of_many_rows_inserts_then_updates_each(database_url: str) -> None:
    """SQLite runs it as multi-row statements (``sql.execute_sqlite_rows``: 2,048, 1,024,
    ... rows each): every row inserted, then each one updated by the second run."""
    engine = make_engine(database_url)
    _metadata.create_all(engine)
    statements: list[str] = []
    sa.event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_a: statements.append(statement),
    )
    moment = datetime(2026, 12, 1, 1, 2, 3, 456789)
    count = 1024 + 256 + 7
    try:
        with engine.begin() as conn:
            insert = bulk_insert(conn, _counts, ("key", "n", "at"))
            statement = insert.on_conflict_do_update(
                index_elements=["key"],
                set_={"n": _counts.c.n + insert.excluded.n, "at": insert.excluded.at},
            )
            keys = [f"k{i}" for i in range(count)]
            for n in (1, 2):
                execute_columns(
                    conn, statement, ("key", "n", "at"), [keys, [n] * count, [moment] * count]
                )
        with engine.connect() as conn:
            stored = {k: (n, at) for k, n, at in conn.execute(sa.select(_counts))}
    finally:
        _metadata.drop_all(engine)
        engine.dispose()
    assert stored == {f"k{i}": (3, moment) for i in range(count)}
    if database_url.startswith("sqlite"):
        inserts = [s for s in statements if s.startswith("INSERT INTO scratch_counts")]
        assert [s.count("), (") + 1 for s in inserts] == [1024, 256, 4, 1, 1, 1] * 2


def test_sqlite_times_are_sqlalchemys_own() -> None:
    """``sqlite_times`` (msgspec's text of UTC and naive times, reshaped) binds what
    SQLAlchemy's SQLite ``DateTime`` does: whole seconds, the first and last years, times
    of other zones (their wall clock), ``None``, in any mix."""
    dialect = sqlite.dialect()
    bind = Time.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    moments = [
        datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC),  # msgspec leaves the fraction out
        datetime(2026, 12, 1, 1, 2, 3, 120000),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(0))),
        datetime(2026, 6, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 6, 1, 12, 0, 0, 5, tzinfo=ZoneInfo("Europe/Berlin")),
    ]
    rng = random.Random(12)
    for size in (0, 1, 2, 5, 40):
        for kinds in ((0,), (0, 1), (0, 2, 3), (0, 1, 2, 3, 4), tuple(range(len(moments)))):
            values: list[datetime | None] = [
                _moved(moments[rng.choice(kinds)], rng.choice((0, -(10**6), 7)))
                for _ in range(size)
            ]
            for with_none in (False, True):
                if with_none and values:
                    values[rng.randrange(len(values))] = None
                assert sqlite_times(values) == [bind(v) for v in values]
                assert sqlite_times(tuple(values)) == [bind(v) for v in values]


def _moved(moment: datetime, microseconds: int) -> datetime:
    try:
        return moment + timedelta(microseconds=microseconds)
    except OverflowError:  # the first and last moments stay as they are
        return moment
