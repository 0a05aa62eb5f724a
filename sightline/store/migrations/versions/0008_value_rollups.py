"""value_days and value_visitors (the breakdowns' and totals' rollups), filled from the events;
the time in the user and anonymous-id indexes of events

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BREAKDOWN_COLUMNS = {
    "page": "page_path",
    "referrer": "referrer_host",
    "channel": "channel",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "country": "country",
    "browser": "browser",
    "os": "os",
    "device": "device_type",
    "event": "name",
}
PERIOD_DAYS = 63


def upgrade() -> None:
    op.create_table(
        "value_days",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("pageviews", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "product_id", "dimension", "is_bot", "day", "value", name=op.f("pk_value_days")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "value_visitors",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("visitor", sa.String(length=255), nullable=False),
        sa.Column("days", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "product_id",
            "dimension",
            "is_bot",
            "period",
            "value",
            "visitor",
            name=op.f("pk_value_visitors"),
            postgresql_include=["days"],
        ),
        sqlite_with_rowid=False,
    )
    backfill(op.get_bind())
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_product_user")
        batch_op.create_index(
            "ix_events_product_user", ["product_id", "user_id", "timestamp"], unique=False
        )
        batch_op.drop_index("ix_events_product_anonymous")
        batch_op.create_index(
            "ix_events_product_anonymous",
            ["product_id", "anonymous_id", "user_id", "timestamp"],
            unique=False,
        )


def backfill(conn: sa.Connection) -> None:
    """The rollups of the events already stored (what the writer would have added)."""
    if conn.dialect.name == "postgresql":
        day = "date_trunc('day', timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        number = "((timestamp AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"
        bit = f"(CAST(1 AS BIGINT) << mod({number}, {PERIOD_DAYS}))"
    else:
        day = "substr(timestamp, 1, 10) || ' 00:00:00.000000'"
        number = "CAST(julianday(substr(timestamp, 1, 10)) - 2440587.5 AS INTEGER)"
        bit = f"(1 << ({number} % {PERIOD_DAYS}))"

    def visitors(name: str, value: str, visitor: str) -> None:
        # Each day is one bit: the sum of a row's distinct day bits is their OR.
        conn.exec_driver_sql(
            "INSERT INTO value_visitors (product_id, dimension, is_bot, period, value, visitor, "
            f"days) SELECT product_id, '{name}', is_bot, period, value, visitor, SUM(bit) FROM "
            f"(SELECT DISTINCT product_id, is_bot, {number} / {PERIOD_DAYS} AS period, "
            f"{value} AS value, {visitor} AS visitor, {bit} AS bit "
            f"FROM events WHERE {visitor} IS NOT NULL) AS seen "
            "GROUP BY product_id, is_bot, period, value, visitor"
        )

    for name, column in BREAKDOWN_COLUMNS.items():
        value = f"COALESCE({column}, '')"
        conn.exec_driver_sql(
            "INSERT INTO value_days (product_id, dimension, is_bot, day, value, events, "
            f"pageviews) SELECT product_id, '{name}', is_bot, {day}, {value}, COUNT(*), "
            "SUM(CASE WHEN type IN ('page', 'screen') THEN 1 ELSE 0 END) "
            f"FROM events GROUP BY product_id, is_bot, {day}, {value}"
        )
        visitors(name, value, "COALESCE(user_id, anonymous_id)")
    visitors("visitors", "''", "COALESCE(user_id, anonymous_id)")
    visitors("users", "''", "user_id")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_product_anonymous")
        batch_op.create_index(
            "ix_events_product_anonymous", ["product_id", "anonymous_id", "user_id"], unique=False
        )
        batch_op.drop_index("ix_events_product_user")
        batch_op.create_index("ix_events_product_user", ["product_id", "user_id"], unique=False)
    op.drop_table("value_visitors")
    op.drop_table("value_days")
