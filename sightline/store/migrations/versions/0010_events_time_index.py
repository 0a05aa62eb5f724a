"""events: one index in time order (product, time, then what the stats read) where there
were three (product and time; time and id; the stats' covering index)

Every secondary index of ``events`` costs every insert. The read API's pages (a
product's events newest first, keyset on (timestamp, id)), the export, retention and
the stats of ranges the daily rollups do not answer all read a product's events in time
order: one covering index serves them all. On PostgreSQL the indexes are the
partitioned table's (so every partition's).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = [
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
STATS = ["type", "user_id", "anonymous_id", "name", *DIMENSIONS]
NEW = {"ix_events_product_time": ["product_id", "timestamp", "is_bot", *STATS]}
OLD = {
    "ix_events_product_timestamp": ["product_id", "timestamp"],
    "ix_events_timestamp_id": ["timestamp", "id"],
    "ix_events_stats": ["product_id", "is_bot", "timestamp", *STATS],
}


def _swap(create: dict[str, list[str]], drop: dict[str, list[str]]) -> None:
    # The new index first: the reads have one all along (inside the migration's
    # transaction on PostgreSQL; SQLite's DDL is transactional too).
    for name, columns in create.items():
        op.create_index(name, "events", columns, unique=False)
    for name in drop:
        op.drop_index(name, table_name="events")


def upgrade() -> None:
    _swap(NEW, OLD)


def downgrade() -> None:
    _swap(OLD, NEW)
