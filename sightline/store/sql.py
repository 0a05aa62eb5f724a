"""SQL helpers the store's writers share: dialect-specific upserts, cached statements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    plain ``INSERT`` that ``executemany`` runs per row in-process."""
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
        list(columns), sa.select(*(rows.c[name] for name in columns))
    )


def execute_rows(
    conn: sa.Connection, statement: Any, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Run a :func:`bulk_insert` statement for ``rows`` (each has every one of ``columns``;
    with ``ON CONFLICT DO UPDATE``, no two rows may share a key)."""
    if conn.dialect.name != "postgresql":
        conn.execute(statement, list(rows))
        return
    conn.execute(statement, {f"_{name}": [row[name] for row in rows] for name in columns})


def _unbounded(kind: Any) -> Any:
    return sa.Text() if isinstance(kind, sa.String) else kind
