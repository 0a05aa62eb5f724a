"""SQL helpers the store's writers share: dialect-specific upserts, cached statements."""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import chain
from typing import Any, cast

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def greatest(conn: sa.Connection, a: Any, b: Any) -> Any:
    return sa.func.greatest(a, b) if conn.dialect.name == "postgresql" else sa.func.max(a, b)


def least(conn: sa.Connection, a: Any, b: Any) -> Any:
    return sa.func.least(a, b) if conn.dialect.name == "postgresql" else sa.func.min(a, b)


IN_CHUNK = 500
"""Most values one ``IN (...)`` list holds (SQLite's default limit is 32,766 variables)."""


_STATEMENTS: dict[tuple[str, str], Any] = {}


def cached_statement(conn: sa.Connection, name: str, build: Callable[[sa.Connection], Any]) -> Any:
    """A statement built once per dialect: building Core constructs costs more than running."""
    key = (conn.dialect.name, name)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = build(conn)
    return statement


def bulk_insert(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> Any:
    """An ``INSERT`` of many rows in one statement, to add ``ON CONFLICT`` to, run by
    :func:`execute_rows`. On PostgreSQL ``INSERT ... SELECT * FROM unnest(one array per
    column)``: one execution for the whole batch instead of one per row (psycopg's
    ``executemany`` pipelines them, but the server still runs each); on SQLite the
    plain ``INSERT`` that ``executemany`` runs per row in-process.

    JSON columns travel as JSON text (a ``text[]``) cast back in the statement: an
    array of JSON values would take a JSON array for one more dimension of the SQL
    array, and a JSON ``null`` for SQL ``NULL`` (see :func:`execute_rows`)."""
    if conn.dialect.name != "postgresql":
        return sqlite.insert(table)
    # text[], not varchar(n)[]: a cast to varchar(n) would cut a long value silently,
    # where the INSERT refuses it (DataError: the batch isolates the message at fault).
    arrays = [
        sa.bindparam(f"_{name}", type_=postgresql.ARRAY(_unbounded(table.c[name].type)))
        for name in columns
    ]
    rows = sa.func.unnest(*arrays).table_valued(*columns).render_derived()
    return postgresql.insert(table).from_select(
        list(columns),
        sa.select(*(_from_text(rows.c[name], table.c[name].type) for name in columns)),
    )


def bulk_update(table: sa.Table, key: str, columns: Sequence[str]) -> Any:
    """PostgreSQL: an ``UPDATE ... FROM unnest(one array per column)`` of many rows by
    ``key`` in one statement, run by :func:`execute_rows` (columns ``key`` and
    ``columns``). A row's SQL ``NULL`` (``None``; ``sa.null()`` for a JSON column)
    leaves that column as it is: rows that change different columns go together."""
    names = (key, *columns)
    arrays = [
        sa.bindparam(f"_{name}", type_=postgresql.ARRAY(_unbounded(table.c[name].type)))
        for name in names
    ]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived()
    values = {
        name: sa.func.coalesce(_from_text(rows.c[name], table.c[name].type), table.c[name])
        for name in columns
    }
    return sa.update(table).where(table.c[key] == rows.c[key]).values(values)


def execute_rows(
    conn: sa.Connection, statement: Any, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Run a :func:`bulk_insert` (or :func:`bulk_update`) statement for ``rows`` (each
    has every one of ``columns``; with ``ON CONFLICT DO UPDATE``, no two rows may share
    a key). A JSON column's
    ``None`` is JSON ``null`` (SQLAlchemy's rule, unless the type says ``none_as_null``),
    ``sa.null()`` SQL ``NULL``."""
    if conn.dialect.name != "postgresql":
        if len(columns) > 1:
            get = operator.itemgetter(*columns)
            execute_columns(conn, statement, columns, list(zip(*map(get, rows), strict=True)))
        else:
            execute_columns(conn, statement, columns, [[row[columns[0]] for row in rows]])
        return
    table: sa.Table = statement.table
    params: dict[str, list[Any]] = {}
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, sa.JSON):
            text = _json_text(conn, kind)
            params[f"_{name}"] = [text(row[name]) for row in rows]
        else:
            params[f"_{name}"] = [row[name] for row in rows]
    conn.execute(statement, params)


def _unbounded(kind: Any) -> Any:
    return sa.Text() if isinstance(kind, (sa.String, sa.JSON)) else kind


def _from_text(column: Any, kind: Any) -> Any:
    return sa.cast(column, kind) if isinstance(kind, sa.JSON) else column


def _json_text(conn: sa.Connection, kind: sa.JSON) -> Callable[[Any], str | None]:
    """A JSON column's values as the engine's JSON serializer writes them."""
    # The serializer the engine was made with (create_engine(json_serializer=...)).
    serialize: Callable[[Any], str] = getattr(conn.dialect, "_json_serializer", None) or json.dumps
    none = None if kind.none_as_null else "null"

    def text(value: Any) -> str | None:
        if value is None:
            return none
        if value is sa.JSON.NULL:
            return "null"
        if isinstance(value, sa.sql.elements.Null):
            return None
        return serialize(value)

    return text


@contextmanager
def pipelined(conn: sa.Connection) -> Iterator[None]:
    """PostgreSQL: the statements run inside go to the server without waiting for each
    one's answer (psycopg's pipeline mode), in one round trip. Only for statements whose
    result nobody reads (SQLAlchemy sees none: a query inside would return no rows); an
    error is raised by the statement that finds it or when the block ends, as
    SQLAlchemy raises it. Elsewhere, nothing changes."""
    if conn.dialect.name != "postgresql":
        yield
        return
    driver = conn.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, "(pipelined statements)", exc) from exc


def driver_error(conn: sa.Connection, statement: str, exc: Exception) -> sa.exc.StatementError:
    """An error of the driver, used directly (``COPY``, pipelines), as SQLAlchemy would
    have raised it: ``DataError`` (the batch isolates the message at fault),
    ``OperationalError`` (an outage: retry the batch) ..."""
    return sa.exc.DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error)


def execute_columns(
    conn: sa.Connection, statement: Any, columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> None:
    """:func:`execute_rows` of rows given column by column: ``values[i]`` holds every
    row's value of ``columns[i]``.

    SQLite: the statement's SQL is compiled once and run by the driver's ``executemany``
    with the values as SQLAlchemy's SQLite types would bind them (times as text), without
    SQLAlchemy's per-row parameter processing, which cost more than SQLite's insert; a
    statement with other types than text, integers, booleans and times (JSON ...) goes
    through SQLAlchemy."""
    if not values or not values[0]:
        return
    compiled = _sqlite_compiled(conn, statement, columns) if conn.dialect.name == "sqlite" else None
    if compiled is None:
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
        if conn.dialect.name == "postgresql":
            execute_rows(conn, statement, columns, rows)
        else:
            conn.execute(statement, rows)
        return
    statements, times = compiled
    if times:
        values = list(values)
        for i in times:
            values[i] = sqlite_times(values[i])
    execute_sqlite_rows(conn, statements, values)


SQLITE_ROWS_AT_ONCE = (2048, 1024, 256, 64, 16, 4, 1)
"""How many rows one SQLite statement of :func:`execute_sqlite_rows` takes: a batch goes
as the fewest of these that the library's bound-variable limit allows (a few statement
texts, each compiled once and kept in the driver's statement cache). Measured
(``bench/worker.py``, 2,048-event batches, alternating runs): 2,048 rows at once rather
than 2 x 1,024 cut the worker's CPU ~115 -> ~110 µs per event; SQLite's default limit
(32,766 values) stops the events (31 columns) at 1,024."""


class SqliteRows:
    """An ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]`` for SQLite, with its ``VALUES``
    repeated for :data:`SQLITE_ROWS_AT_ONCE` rows (each text made once, when needed)."""

    def __init__(self, sql: str, width: int) -> None:
        self.width = width
        row = "(" + ", ".join(["?"] * width) + ")"
        head, found, tail = sql.partition("VALUES " + row)
        if not found or row in tail:
            raise ValueError(f"not one row of {width} values: {sql}")
        self._parts = (head + "VALUES ", row, tail)
        self._texts: dict[int, str] = {}

    def __getitem__(self, rows: int) -> str:
        text = self._texts.get(rows)
        if text is None:
            head, row, tail = self._parts
            text = self._texts[rows] = head + ", ".join([row] * rows) + tail
        return text


def execute_sqlite_rows(
    conn: sa.Connection, statements: SqliteRows, values: Sequence[Sequence[Any]]
) -> int:
    """Run ``statements`` on SQLite for the rows given column by column (``values[i]``
    holds every row's value of the i-th column, already as the driver binds it); the
    rows it changed.

    Up to 2,048 rows per statement (:data:`SQLITE_ROWS_AT_ONCE`), not ``executemany``'s
    one: SQLite then works through them in one call during which the driver holds no
    GIL, so the worker's preparing of the next batch (``worker.rqworker``) runs
    meanwhile. Through ``executemany`` the writing thread needs the GIL back after every
    row, and waits each time for the other thread to let it go (up to the interpreter's
    switch interval, 5 ms)."""
    count = len(values[0]) if values else 0
    limit = conn.connection.driver_connection.getlimit(  # type: ignore[union-attr]
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
    )
    changed, start = 0, 0
    for size in SQLITE_ROWS_AT_ONCE:
        if size * statements.width > limit and size > 1:
            continue
        while count - start >= size:
            chunk = (column[start : start + size] for column in values)
            flat = tuple(chain.from_iterable(zip(*chunk, strict=True)))  # row by row, in C
            changed += conn.exec_driver_sql(statements[size], flat).rowcount
            start += size
    return changed


def sqlite_time(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it: the wall clock as text,
    microseconds always (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


_UTC_OR_NAIVE = frozenset((UTC, None))
_ZONE = operator.attrgetter("tzinfo")
_time_list = msgspec.json.Encoder().encode
_SQLITE_TIME_LENGTH = 26  # YYYY-MM-DD HH:MM:SS.ffffff


def sqlite_times(values: Sequence[datetime | None]) -> list[str | None]:
    """:func:`sqlite_time` of each value.

    Times in UTC (or naive: a wall clock as it is) are written by msgspec, all in one
    call, as RFC 3339 text that only differs from SQLite's form by its ``T`` and ``Z``
    (and by leaving out a fraction of zero): a tenth of the cost of formatting each in
    Python, which the worker paid for three times of every event it stores."""
    if None in values:
        texts = iter(sqlite_times([v for v in values if v is not None]))
        return [None if v is None else next(texts) for v in values]
    if not values:
        return []
    if not _UTC_OR_NAIVE.issuperset(map(_ZONE, values)):
        return list(map(sqlite_time, values))
    # ["2026-12-01T01:02:03.456789Z",...]: no T, Z, quote nor comma but these
    text = _time_list(values).decode().replace("T", " ").replace("Z", "")
    times = text[2:-2].split('","')
    if len(text) != len(values) * (_SQLITE_TIME_LENGTH + 3) + 1:  # a whole second or more
        times = [t if len(t) == _SQLITE_TIME_LENGTH else f"{t}.000000" for t in times]
    return cast("list[str | None]", times)


# Bound as SQLAlchemy binds them on SQLite by the driver itself (a bool as 0 / 1), or a time.
_PLAIN_TYPES = (sa.String, sa.Integer, sa.Boolean)
_SQLITE_COMPILED_MAX = 256
_SQLITE_COMPILED: dict[
    tuple[int, tuple[str, ...]], tuple[Any, tuple[SqliteRows, tuple[int, ...]] | None]
] = {}


def _sqlite_compiled(
    conn: sa.Connection, statement: Any, columns: Sequence[str]
) -> tuple[SqliteRows, tuple[int, ...]] | None:
    """The positional SQL of a SQLite :func:`bulk_insert` statement for ``columns`` and
    the places of its times; ``None`` when a column needs SQLAlchemy's own binding."""
    key = (id(statement), tuple(columns))
    found = _SQLITE_COMPILED.get(key)
    if found is not None and found[0] is statement:  # the statement itself is kept: its id
        return found[1]
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(columns))
    kinds = [statement.table.c[name].type for name in columns]
    plain = list(compiled.positiontup or ()) == list(columns) and all(
        isinstance(kind, sa.DateTime)
        or (isinstance(kind, _PLAIN_TYPES) and not isinstance(kind, sa.Enum))
        for kind in kinds
    )
    result = None
    if plain:
        times = tuple(i for i, kind in enumerate(kinds) if isinstance(kind, sa.DateTime))
        result = (SqliteRows(compiled.string, len(columns)), times)
    if len(_SQLITE_COMPILED) >= _SQLITE_COMPILED_MAX:  # statements are meant to be cached
        _SQLITE_COMPILED.clear()  # (cached_statement); a caller that builds them anew
    _SQLITE_COMPILED[key] = (statement, result)  # each time must not grow this forever
    return result
