"""SQL helpers the store's writers share: dialect-specific upserts, cached statements."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

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
    sql, times = compiled
    if times:
        values = list(values)
        for i in times:
            values[i] = sqlite_times(values[i])
    conn.exec_driver_sql(sql, list(zip(*values, strict=True)))


def sqlite_time(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it: the wall clock as text,
    microseconds always (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


def sqlite_times(values: Iterable[datetime | None]) -> list[str | None]:
    """:func:`sqlite_time` of each value."""
    return list(map(sqlite_time, values))


# Bound as SQLAlchemy binds them on SQLite by the driver itself (a bool as 0 / 1), or a time.
_PLAIN_TYPES = (sa.String, sa.Integer, sa.Boolean)
_SQLITE_COMPILED_MAX = 256
_SQLITE_COMPILED: dict[
    tuple[int, tuple[str, ...]], tuple[Any, tuple[str, tuple[int, ...]] | None]
] = {}


def _sqlite_compiled(
    conn: sa.Connection, statement: Any, columns: Sequence[str]
) -> tuple[str, tuple[int, ...]] | None:
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
        result = (compiled.string, times)
    if len(_SQLITE_COMPILED) >= _SQLITE_COMPILED_MAX:  # statements are meant to be cached
        _SQLITE_COMPILED.clear()  # (cached_statement); a caller that builds them anew
    _SQLITE_COMPILED[key] = (statement, result)  # each time must not grow this forever
    return result
