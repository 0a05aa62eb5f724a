"""events: the anonymous index holds the events without a user id only

Every index of ``events`` costs every insert. Each read of ``anonymous_id`` (a person's
events before their login, ``sightline.store.identity``; their erasure,
``sightline.store.erasure``) asks for events whose ``user_id IS NULL`` and whose
anonymous id is one of a few: an identified event (a logged-in visitor's) is never read
through this index, and now costs it no entry (with the user index partial the other way
round since 0011, an event is in exactly one of the two). The user id, always NULL in
it, leaves its columns. On PostgreSQL the index is the partitioned table's (so every
partition's); built inside the migration's transaction, as 0010's and 0011's.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_events_product_anonymous"
CONDITION = "user_id IS NULL"


def upgrade() -> None:
    op.drop_index(NAME, table_name="events")
    where = sa.text(CONDITION)
    op.create_index(
        NAME,
        "events",
        ["product_id", "anonymous_id", "timestamp"],
        unique=False,
        postgresql_where=where,
        sqlite_where=where,
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="events")
    op.create_index(
        NAME, "events", ["product_id", "anonymous_id", "user_id", "timestamp"], unique=False
    )
