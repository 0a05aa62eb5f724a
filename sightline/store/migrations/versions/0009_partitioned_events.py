"""PostgreSQL: events range-partitioned by month on timestamp, dedup keys in event_keys

The existing table is renamed, a partitioned ``events`` with the same columns is
created with a default partition and one partition for every month that holds events
plus the current and next two months, the rows are copied, the indexes built on the
parent (so on every partition), the keys of the stored events copied into
``event_keys``, and the old table dropped. On an empty database that is a few
statements; on a populated one it copies the table once (done inside the migration's
transaction: nothing is half-converted if it fails). SQLite: nothing to do.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from sightline.store.partitions import (
    DEFAULT_PARTITION,
    MONTHS_AHEAD,
    add_months,
    month_of,
    partition_name,
)

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "events_unpartitioned"

INDEXES = {
    "ix_events_product_timestamp": "product_id, timestamp",
    "ix_events_product_user": "product_id, user_id, timestamp",
    "ix_events_product_anonymous": "product_id, anonymous_id, user_id, timestamp",
    "ix_events_product_account": "product_id, account_id",
    "ix_events_product_entity": "product_id, entity_type, entity_id",
    "ix_events_timestamp_id": "timestamp, id",
    "ix_events_product_type_timestamp": "product_id, type, timestamp",
    "ix_events_product_name_timestamp": "product_id, name, timestamp",
    "ix_events_stats": (
        "product_id, is_bot, timestamp, type, user_id, anonymous_id, name, page_path, "
        "referrer_host, channel, utm_source, utm_medium, utm_campaign, country, browser, "
        "os, device_type"
    ),
}


def _literal(moment: datetime) -> str:
    return f"'{moment.isoformat(' ')}'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    execute = bind.exec_driver_sql
    # The old table and its constraints and indexes step aside (names are per schema).
    execute(f"ALTER TABLE events RENAME TO {OLD}")
    execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_events TO pk_{OLD}")
    execute(f"ALTER TABLE {OLD} DROP CONSTRAINT uq_events_product_message")
    for name in INDEXES:
        execute(f"DROP INDEX {name}")
    execute(
        f"CREATE TABLE events (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (timestamp)"
    )
    execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF events DEFAULT")
    months = {
        month_of(m)
        for m in bind.exec_driver_sql(
            f"SELECT DISTINCT date_trunc('month', timestamp AT TIME ZONE 'UTC') FROM {OLD}"
        ).scalars()
    }
    current = month_of(datetime.now(UTC))
    months |= {add_months(current, n) for n in range(MONTHS_AHEAD + 1)}
    for start in sorted(months):
        execute(
            f"CREATE TABLE {partition_name(start)} PARTITION OF events FOR VALUES "
            f"FROM ({_literal(start)}) TO ({_literal(add_months(start, 1))})"
        )
    # Rows first, indexes after: one sorted build per index instead of row-by-row upkeep.
    execute(f"INSERT INTO events SELECT * FROM {OLD}")
    execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id, timestamp)")
    for name, columns in INDEXES.items():
        execute(f"CREATE INDEX {name} ON events ({columns})")
    op.create_table(
        "event_keys",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "message_id", name=op.f("pk_event_keys")),
    )
    execute(
        "INSERT INTO event_keys (product_id, message_id, timestamp) "
        f"SELECT product_id, message_id, timestamp FROM {OLD}"
    )
    op.create_index("ix_event_keys_timestamp", "event_keys", ["timestamp"], unique=False)
    execute(f"DROP TABLE {OLD}")
    execute("ANALYZE events")
    execute("ANALYZE event_keys")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    execute = bind.exec_driver_sql
    execute(f"ALTER TABLE events RENAME TO {OLD}")
    execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_events TO pk_{OLD}")
    for name in INDEXES:
        execute(f"DROP INDEX {name}")
    execute(f"CREATE TABLE events (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    execute(f"INSERT INTO events SELECT * FROM {OLD}")
    execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id)")
    execute(
        "ALTER TABLE events ADD CONSTRAINT uq_events_product_message "
        "UNIQUE (product_id, message_id)"
    )
    for name, columns in INDEXES.items():
        execute(f"CREATE INDEX {name} ON events ({columns})")
    execute(f"DROP TABLE {OLD}")  # and its partitions
    op.drop_table("event_keys")
