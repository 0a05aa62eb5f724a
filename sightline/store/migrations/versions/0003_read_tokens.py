"""read tokens (per-product read keys, admin tokens) and the read API's indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 15:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "read_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_read_tokens_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_read_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_read_tokens_token_hash")),
    )
    with op.batch_alter_table("read_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_read_tokens_product_id"), ["product_id"], unique=False)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_timestamp_id", ["timestamp", "id"], unique=False)
        batch_op.create_index(
            "ix_events_product_type_timestamp", ["product_id", "type", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_events_product_name_timestamp", ["product_id", "name", "timestamp"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_product_name_timestamp")
        batch_op.drop_index("ix_events_product_type_timestamp")
        batch_op.drop_index("ix_events_timestamp_id")
    with op.batch_alter_table("read_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_read_tokens_product_id"))
    op.drop_table("read_tokens")
