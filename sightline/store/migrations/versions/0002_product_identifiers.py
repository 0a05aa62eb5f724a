"""product identifiers: other trackers' names for a product

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product_identifiers",
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_identifiers_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("format", "value", name=op.f("pk_product_identifiers")),
    )
    with op.batch_alter_table("product_identifiers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_product_identifiers_product_id"), ["product_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("product_identifiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_identifiers_product_id"))
    op.drop_table("product_identifiers")
