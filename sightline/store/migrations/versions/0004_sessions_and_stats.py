"""sessions, and the events' stats columns (page, referrer, channel, UTM, country, agent)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = (
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
)
FIRST_EVENT = (
    "entry_page",
    "referrer_host",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "country",
    "browser",
    "os",
    "device_type",
)


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in DIMENSIONS:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_events_stats", ["product_id", "is_bot", "timestamp"], unique=False
        )
    op.create_table(
        "sessions",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("visitor", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("assigned", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("interaction_count", sa.Integer(), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Text(), nullable=True) for name in FIRST_EVENT),
        sa.PrimaryKeyConstraint("product_id", "visitor", "session_id", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sessions_product_started", ["product_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_sessions_visitor_ended", ["product_id", "visitor", "ended_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_visitor_ended")
        batch_op.drop_index("ix_sessions_product_started")
    op.drop_table("sessions")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_stats")
        for name in reversed(DIMENSIONS):
            batch_op.drop_column(name)
