"""visitor_days (the stats' daily rollup); covering stats indexes on events (every column
the stats read) and sessions; user_id in the anonymous-id index of events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COVERING = [
    "product_id",
    "is_bot",
    "timestamp",
    "type",
    "user_id",
    "anonymous_id",
    "name",
    "page_path",
    "referrer_host",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "country",
    "browser",
    "os",
    "device_type",
]

SESSIONS_COVERING = ["product_id", "started_at", "is_bot", "page_count", "interaction_count"]


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_stats")
        batch_op.create_index("ix_events_stats", COVERING, unique=False)
        batch_op.drop_index("ix_events_product_anonymous")
        batch_op.create_index(
            "ix_events_product_anonymous", ["product_id", "anonymous_id", "user_id"], unique=False
        )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_product_started")
        batch_op.create_index("ix_sessions_product_started", SESSIONS_COVERING, unique=False)
    op.create_table(
        "visitor_days",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("visitor", sa.String(length=255), nullable=False),
        sa.Column("is_user", sa.Boolean(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("pageviews", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "product_id", "day", "is_bot", "visitor", name=op.f("pk_visitor_days")
        ),
    )
    # Stored events before this revision are rolled up from the events table.
    day = (
        "date_trunc('day', timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if op.get_bind().dialect.name == "postgresql"
        else "substr(timestamp, 1, 10) || ' 00:00:00.000000'"
    )
    op.execute(
        "INSERT INTO visitor_days (product_id, day, is_bot, visitor, is_user, events, pageviews) "
        f"SELECT product_id, {day}, is_bot, COALESCE(user_id, anonymous_id, ''), "
        "MAX(CASE WHEN user_id IS NOT NULL THEN 1 ELSE 0 END) = 1, COUNT(*), "
        "SUM(CASE WHEN type IN ('page', 'screen') THEN 1 ELSE 0 END) "
        f"FROM events GROUP BY product_id, {day}, is_bot, COALESCE(user_id, anonymous_id, '')"
    )


def downgrade() -> None:
    op.drop_table("visitor_days")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_product_started")
        batch_op.create_index(
            "ix_sessions_product_started", ["product_id", "started_at"], unique=False
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_product_anonymous")
        batch_op.create_index(
            "ix_events_product_anonymous", ["product_id", "anonymous_id"], unique=False
        )
        batch_op.drop_index("ix_events_stats")
        batch_op.create_index(
            "ix_events_stats", ["product_id", "is_bot", "timestamp"], unique=False
        )
