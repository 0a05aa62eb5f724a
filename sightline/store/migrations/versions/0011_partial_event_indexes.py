"""events: the user, account and entity indexes partial (the events that have one); the
event keys' time index a BRIN index (PostgreSQL)

Every index of ``events`` costs every insert. The person, account and entity reads
(``sightline.store.identity``, ``sightline.store.lookups``) look for events whose
column equals some ids, never NULL: the events without a user id (anonymous traffic,
most of a site's), an account or an entity are left out of those indexes and cost no
entry there. ``event_keys`` (PostgreSQL) is read by time only by retention: a BRIN
index (a summary per range of pages; the keys arrive in about time order) instead of
a b-tree entry per key. On PostgreSQL the indexes are the partitioned table's (so
every partition's); built inside the migration's transaction, as 0010's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTIAL = {
    "ix_events_product_user": (["product_id", "user_id", "timestamp"], "user_id IS NOT NULL"),
    "ix_events_product_account": (["product_id", "account_id"], "account_id IS NOT NULL"),
    "ix_events_product_entity": (
        ["product_id", "entity_type", "entity_id"],
        "entity_type IS NOT NULL",
    ),
}
KEYS_TIME = "ix_event_keys_timestamp"


def _events_indexes(partial: bool) -> None:
    for name, (columns, condition) in PARTIAL.items():
        op.drop_index(name, table_name="events")
        where = sa.text(condition) if partial else None
        op.create_index(
            name, "events", columns, unique=False, postgresql_where=where, sqlite_where=where
        )


def _keys_index(using: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # no event_keys on SQLite
    op.drop_index(KEYS_TIME, table_name="event_keys")
    op.create_index(KEYS_TIME, "event_keys", ["timestamp"], unique=False, postgresql_using=using)


def upgrade() -> None:
    _events_indexes(partial=True)
    _keys_index("brin")


def downgrade() -> None:
    _events_indexes(partial=False)
    _keys_index("btree")
