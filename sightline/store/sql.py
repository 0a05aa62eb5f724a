"""SQL helpers the store's writers share: dialect-specific upserts, cached statements."""

from __future__ import annotations

from collections.abc import Callable
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
