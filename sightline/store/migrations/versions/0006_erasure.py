"""erasure: suppression lists (salt and version per product), suppressed id hashes, and
erasure receipts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _product_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["product_id"], ["products.id"], name=op.f(f"fk_{table}_product_id_products")
    )


def upgrade() -> None:
    op.create_table(
        "suppression_lists",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _product_fk("suppression_lists"),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_suppression_lists")),
    )
    op.create_table(
        "suppressed_ids",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _product_fk("suppressed_ids"),
        sa.PrimaryKeyConstraint("product_id", "id_hash", name=op.f("pk_suppressed_ids")),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("deleted", JSON, nullable=False),
        _product_fk("erasures"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        sa.UniqueConstraint("product_id", "subject_hash", name="uq_erasures_product_subject"),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("suppressed_ids")
    op.drop_table("suppression_lists")
