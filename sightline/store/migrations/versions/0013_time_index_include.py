"""events (PostgreSQL): the time index keyed by the product and the time, the stats'
columns as INCLUDE columns

``ix_events_product_time`` (migration 0010) is read as ranges of (product, time): the
read API's pages, the export, retention, and the stats of ranges the rollups do not
answer, which read its other columns from the index alone. As key columns those
columns cost an insert comparisons wherever the product and the time tie (events of
one moment: a batch, an import, second-resolution clocks); as INCLUDE columns they are
in the leaf entries only, never compared, still read by index-only scans. Nothing filters or
sorts on them through the index. SQLite has no INCLUDE: its index stays as it is. On
PostgreSQL the index is the partitioned table's (so every partition's); built inside
the migration's transaction, as 0010's.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_events_product_time"
KEYS = ["product_id", "timestamp"]
STATS = [
    "is_bot",
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


def _rebuild(include: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: no INCLUDE; every column stays a key column
    op.drop_index(NAME, table_name="events")
    if include:
        op.create_index(NAME, "events", KEYS, unique=False, postgresql_include=STATS)
    else:
        op.create_index(NAME, "events", KEYS + STATS, unique=False)


def upgrade() -> None:
    _rebuild(include=True)


def downgrade() -> None:
    _rebuild(include=False)
