"""Tables of the canonical model (see ARCHITECTURE.md, "The canonical model").

SQLAlchemy Core, portable between SQLite and PostgreSQL. Alembic migrations in
``migrations/`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("allowed_origins", JSON, nullable=False),
    sa.Column("ip_handling", sa.String(16), nullable=False, server_default="full"),
    sa.Column("bot_handling", sa.String(16), nullable=False, server_default="flag"),
    sa.Column("is_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("channel_merging", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("settings", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

product_keys = sa.Table(
    "product_keys",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "write" (public) or "server" (secret)
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
)

product_identifiers = sa.Table(
    "product_identifiers",
    metadata,
    # Another tracker's name for a product: a Plausible domain, a Umami website id,
    # a Matomo site number, a GA4 measurement id ... (``sightline products ids``).
    sa.Column("format", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=False, index=True),
    sa.Column("created_at", Time, nullable=False),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("parent_id", BigId, sa.ForeignKey("accounts.id"), nullable=True, index=True),
    sa.Column("traits", JSON, nullable=False),
    sa.Column("payment_ids", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # A server key created or changed it: a write key of a restricted product changes
    # nothing of it (sightline/store/effects.py, "the write-key policy").
    sa.Column("server_owned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("product_id", "external_id", name="uq_accounts_product_external"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("account_id", BigId, sa.ForeignKey("accounts.id"), nullable=True, index=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("mobile", sa.String(64), nullable=True),
    sa.Column("payment_ids", JSON, nullable=False),
    sa.Column("first_seen", Time, nullable=True),
    sa.Column("last_seen", Time, nullable=True),
    sa.Column("event_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # A server key created or changed it (identify, profile APIs): a write key of a
    # restricted product may not move it to another account, nor make its id an alias.
    sa.Column("server_owned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("product_id", "external_id", name="uq_users_product_external"),
)

user_attributes = sa.Table(
    "user_attributes",
    metadata,
    sa.Column("user_id", BigId, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("value", JSON, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # A server key set it last: a write key of a restricted product cannot change it.
    sa.Column("server_set", sa.Boolean, nullable=False, server_default=sa.false()),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("product_id", sa.ForeignKey("products.id"), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", Time, nullable=False),
)

DIMENSION_COLUMNS = (
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
"""Columns of ``events`` the writer fills from the enriched context for the stats."""
TIME_INDEX_COLUMNS = (
    "product_id",
    "timestamp",
    "is_bot",
    "type",
    "user_id",
    "anonymous_id",
    "name",
    *DIMENSION_COLUMNS,
)


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, on both databases."""
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


ONLY_ON = "only_on"
"""``info`` key of a table, constraint or index that exists on one database only: its
name."""

events = sa.Table(
    "events",
    metadata,
    # On PostgreSQL the table is partitioned by month on ``timestamp`` (migration 0009,
    # sightline/store/partitions.py) and its primary key is (id, timestamp): a unique
    # index of a partitioned table must hold the partition key.
    sa.Column("id", sa.String(36), primary_key=True),  # UUIDv7: time-ordered
    sa.Column("product_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("timestamp", Time, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("sent_at", Time, nullable=True),
    sa.Column("original_timestamp", Time, nullable=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("anonymous_id", sa.String(255), nullable=True),
    sa.Column("account_id", sa.String(255), nullable=True),
    sa.Column("session_id", sa.String(255), nullable=True),
    sa.Column("entity_type", sa.String(64), nullable=True),
    sa.Column("entity_id", sa.String(255), nullable=True),
    sa.Column("recording_id", sa.String(255), nullable=True),
    sa.Column("properties", JSON, nullable=False),
    sa.Column("context", JSON, nullable=False),
    sa.Column("dialect", sa.String(32), nullable=False),
    sa.Column("is_bot", sa.Boolean, nullable=False),
    sa.Column("is_unused", sa.Boolean, nullable=False),
    # What the stats group by, copied out of the enriched context by the writer
    # (sightline/store/dimensions.py): real columns, indexed, read alike on SQLite and
    # PostgreSQL. Text truncated by the writer (so the worker's size checks, which
    # read the String lengths, leave them alone).
    *(sa.Column(name, sa.Text, nullable=True) for name in DIMENSION_COLUMNS),
    # The idempotency key: a job run twice, or a client retry, stores nothing twice.
    # SQLite only: on PostgreSQL the keys are the table event_keys (below).
    sa.UniqueConstraint(
        "product_id", "message_id", name="uq_events_product_message", info={ONLY_ON: "sqlite"}
    ).ddl_if(dialect="sqlite"),
    # A product's events in time order: the read API's pages (newest first, keyset on
    # (timestamp, id), sightline/store/reads.py), the export, retention, and the stats of
    # ranges the rollups do not answer (sightline/store/stats.py: not whole UTC days, or
    # per hour). Covering for the stats: a range's counts, uniques and breakdowns are read
    # from the index alone (a few hundred bytes an event, never its properties and
    # context); bots are filtered in the index. One index where there were three (the
    # time, the time and id, the stats'): each costs every insert (migration 0010).
    # Without the id: a page sorts the events of one timestamp by id. With it, the index
    # would give a page's whole order, and SQLite would rather walk a product's events
    # newest first than read a user's, a type's or a name's index (a scan of the product
    # for a light user).
    # PostgreSQL: keyed by the product and the time only, the stats' columns carried as
    # INCLUDE columns (still read by index-only scans): an insert among events of the
    # same moment no longer compares them (migration 0013); a page
    # without bots reads the flag of the rows it fetches, the stats read it from the
    # index still. SQLite has no INCLUDE: every column is a key column there.
    sa.Index("ix_events_product_time", *TIME_INDEX_COLUMNS, info={ONLY_ON: "sqlite"}).ddl_if(
        dialect="sqlite"
    ),
    sa.Index(
        "ix_events_product_time",
        *TIME_INDEX_COLUMNS[:2],
        postgresql_include=list(TIME_INDEX_COLUMNS[2:]),
        info={ONLY_ON: "postgresql"},
    ).ddl_if(dialect="postgresql"),
    # With the time: a person's newest events (the read API's user filter,
    # sightline/store/identity.py) are ranges of these two, in time order, whatever the
    # planner guesses of how many there are (migration 0008). Partial: the events
    # without a user id (most of a site's traffic) are in the anonymous index only,
    # and cost no insert here; a read of user ids says they are not NULL (migration 0011).
    sa.Index(
        "ix_events_product_user",
        "product_id",
        "user_id",
        "timestamp",
        **_where("user_id IS NOT NULL"),
    ),
    # "Anonymous id in (...) and user id is null" (a person's events before their login,
    # sightline/store/identity.py; the erasure's): one range per id. Partial: an event
    # with a user id is never read through it (in the user index only; migration 0012).
    sa.Index(
        "ix_events_product_anonymous",
        "product_id",
        "anonymous_id",
        "timestamp",
        **_where("user_id IS NULL"),
    ),
    # Partial too (migration 0011): the account and entity filters read the events that
    # have one (an equality or IN on the column: never NULL), a few of them.
    sa.Index(
        "ix_events_product_account", "product_id", "account_id", **_where("account_id IS NOT NULL")
    ),
    sa.Index(
        "ix_events_product_entity",
        "product_id",
        "entity_type",
        "entity_id",
        **_where("entity_type IS NOT NULL"),
    ),
    sa.Index("ix_events_product_type_timestamp", "product_id", "type", "timestamp"),
    sa.Index("ix_events_product_name_timestamp", "product_id", "name", "timestamp"),
)

event_keys = sa.Table(
    "event_keys",
    metadata,
    # PostgreSQL: the idempotency keys of the partitioned events (one row per stored
    # event; sightline/store/partitions.py). The writer inserts a batch's keys first and
    # stores the events whose key was new. Kept as long as the event (retention).
    sa.Column("product_id", sa.String(40), primary_key=True),
    sa.Column("message_id", sa.String(255), primary_key=True),
    sa.Column("timestamp", Time, nullable=False),
    # Retention's only read (keys older than the horizon): a BRIN index, a summary per
    # range of pages, where a b-tree cost every insert an entry (keys arrive in about
    # time order; migration 0011).
    sa.Index("ix_event_keys_timestamp", "timestamp", postgresql_using="brin"),
    info={ONLY_ON: "postgresql"},
)


def exists_on(dialect: str, item: object) -> bool:
    """Whether a table, constraint or index of the metadata exists on the database ``dialect``."""
    info = getattr(item, "info", None) or {}
    return bool(info.get(ONLY_ON, dialect) == dialect)


dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.String(40), nullable=True, index=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("envelope", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("replayed_at", Time, nullable=True),
)

read_tokens = sa.Table(
    "read_tokens",
    metadata,
    # A credential that may read stored data (``sightline tokens``): a product's read key,
    # or an instance admin token (``product_id`` NULL). Only the SHA-256 of the token is
    # kept; the token itself is shown once, when it is created.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "read" or "admin"
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=True, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    # A visit: a visitor's events with less than 30 minutes between them (the worker's
    # rule, sightline/store/sessions.py), or one session id the client sent. Updated in
    # the transaction that stores its events, by the newly stored events only.
    sa.Column("product_id", sa.String(40), primary_key=True),
    # the user id, else the anonymous id, of the session's events
    sa.Column("visitor", sa.String(255), primary_key=True),
    sa.Column("session_id", sa.String(255), primary_key=True),
    # true: Sightline made it (30 minutes of inactivity); false: the client's session id
    sa.Column("assigned", sa.Boolean, nullable=False),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("ended_at", Time, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False),
    # page and screen views
    sa.Column("page_count", sa.Integer, nullable=False),
    # track and click events: what makes a one-page session not a bounce
    sa.Column("interaction_count", sa.Integer, nullable=False),
    sa.Column("is_bot", sa.Boolean, nullable=False),
    # Of its first event:
    sa.Column("entry_page", sa.Text, nullable=True),
    sa.Column("referrer_host", sa.Text, nullable=True),
    sa.Column("channel", sa.Text, nullable=True),
    sa.Column("utm_source", sa.Text, nullable=True),
    sa.Column("utm_medium", sa.Text, nullable=True),
    sa.Column("utm_campaign", sa.Text, nullable=True),
    sa.Column("country", sa.Text, nullable=True),
    sa.Column("browser", sa.Text, nullable=True),
    sa.Column("os", sa.Text, nullable=True),
    sa.Column("device_type", sa.Text, nullable=True),
    # Covering: the session counts of a range are read from the index alone.
    sa.Index(
        "ix_sessions_product_started",
        "product_id",
        "started_at",
        "is_bot",
        "page_count",
        "interaction_count",
    ),
    sa.Index("ix_sessions_visitor_ended", "product_id", "visitor", "ended_at"),
)

visitor_days = sa.Table(
    "visitor_days",
    metadata,
    # A rollup the stats read for whole UTC days (sightline/store/rollups.py): one row per
    # visitor per day (bots apart), so a day's unique visitors are a count of rows. Kept
    # by the writer in the batch's transaction from the newly stored events only.
    sa.Column("product_id", sa.String(40), primary_key=True),
    sa.Column("day", Time, primary_key=True),  # midnight UTC
    sa.Column("is_bot", sa.Boolean, primary_key=True),
    # the user id, else the anonymous id; '' for events with neither (counted, not unique)
    sa.Column("visitor", sa.String(255), primary_key=True),
    sa.Column("is_user", sa.Boolean, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("pageviews", sa.Integer, nullable=False),
)

value_days = sa.Table(
    "value_days",
    metadata,
    # A breakdown's daily rollup (sightline/store/rollups.py): the events and page views of
    # one value of one breakdown ("page", "referrer" ... "event") per UTC day, bots apart.
    # value '' stands for events without the dimension (the column is NULL). Kept by the
    # writer in the batch's transaction from the newly stored events only.
    sa.Column("product_id", sa.String(40), primary_key=True),
    sa.Column("dimension", sa.String(16), primary_key=True),
    sa.Column("is_bot", sa.Boolean, primary_key=True),
    sa.Column("day", Time, primary_key=True),  # midnight UTC
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("pageviews", sa.Integer, nullable=False),
    # SQLite: the rows live in the key's b-tree, so a range of keys is read with its counts
    # (no lookup per row into a rowid table).
    sqlite_with_rowid=False,
)

value_visitors = sa.Table(
    "value_visitors",
    metadata,
    # The visitors of each breakdown value (sightline/store/rollups.py): one row per visitor
    # and value per period of 63 UTC days, a bit set for each day they had an event with
    # the value. A range's exact unique visitors per value: distinct visitors of the rows
    # whose bits meet the range's days. Two more dimensions, "visitors" and "users" (value
    # ''), hold every visitor and user id: the totals' uniques. Keyed by (product_id,
    # visitor): an erasure deletes a person's rows (sightline/store/erasure.py).
    sa.Column("product_id", sa.String(40), nullable=False),
    sa.Column("dimension", sa.String(16), nullable=False),
    sa.Column("is_bot", sa.Boolean, nullable=False),
    sa.Column("period", sa.Integer, nullable=False),  # days since 1970-01-01 // 63
    sa.Column("value", sa.Text, nullable=False),
    # the user id, else the anonymous id (events with neither have no visitor row)
    sa.Column("visitor", sa.String(255), nullable=False),
    sa.Column("days", sa.BigInteger, nullable=False),  # bit n: the period's n-th day
    # PostgreSQL: the key's index carries the days, so a range is read from the index alone
    # (an index-only scan); SQLite: the rows live in the key's b-tree (WITHOUT ROWID).
    sa.PrimaryKeyConstraint(
        "product_id",
        "dimension",
        "is_bot",
        "period",
        "value",
        "visitor",
        postgresql_include=["days"],
    ),
    sqlite_with_rowid=False,
)

suppression_lists = sa.Table(
    "suppression_lists",
    metadata,
    # A product's suppression list (sightline/store/erasure.py): the salt its ids are hashed
    # with, and a version every change bumps. The worker reads the version in each batch's
    # write transaction and reloads its cached list when it moved.
    sa.Column("product_id", sa.ForeignKey("products.id"), primary_key=True),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

suppressed_ids = sa.Table(
    "suppressed_ids",
    metadata,
    # Ids of erased people (user ids, aliases, anonymous ids) whose later events are dropped:
    # only SHA-256(salt, product, id), never the id.
    sa.Column("product_id", sa.ForeignKey("products.id"), primary_key=True),
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", Time, nullable=False),
)

erasures = sa.Table(
    "erasures",
    metadata,
    # The receipt of an erasure (``sightline users forget``): who asked, when, how many rows
    # of each table went. No personal data: the subject is kept as the salted hash of the
    # user id only, so a repeated request finds (and resumes) its receipt.
    sa.Column("id", sa.String(40), primary_key=True),  # the opaque reference
    sa.Column("product_id", sa.ForeignKey("products.id"), nullable=False),
    sa.Column("subject_hash", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(80), nullable=False),
    sa.Column("requested_at", Time, nullable=False),
    sa.Column("completed_at", Time, nullable=True),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("deleted", JSON, nullable=False),
    sa.UniqueConstraint("product_id", "subject_hash", name="uq_erasures_product_subject"),
)
