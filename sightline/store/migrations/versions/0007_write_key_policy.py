"""write-key policy: who owns users, accounts and profile attributes

``users.server_owned`` and ``accounts.server_owned``: a server key created or changed
the row; ``user_attributes.server_set``: a server key set the attribute last. Rows from
before are not server-owned (nobody recorded who wrote them): a server key's next change
marks them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("users", "server_owned"),
    ("accounts", "server_owned"),
    ("user_attributes", "server_set"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false())
            )


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
