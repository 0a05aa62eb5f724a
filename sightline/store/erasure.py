"""Erasing a person, and suppressing their later events (``sightline users forget``).

``forget_user(engine, product, user id)`` does, in this order, each step in bounded
transactions (at most ``chunk_size`` rows deleted per transaction, so a person with
millions of events never holds one huge transaction):

1. **Suppress** (one transaction): the person's ids, the user id and every id that
   resolves to them through aliases (``sightline.store.identity``: anonymous ids joined
   on identify, Segment aliases, merged ids), go on the product's suppression list as
   SHA-256(salt, product, id), the list's version is bumped, and the receipt is opened
   (or found again: a repeated request is recognised by the salted hash of the user id).
   The worker reads that version inside every batch's write transaction (see
   :func:`lock_for_batch`), so an event for a suppressed id is never stored once this
   transaction has committed, however stale a worker's cache.
2. **Delete**, resolving the ids again from what is still stored: the person's events
   (an event is theirs by the rule of ``identity.user_condition``: its user id is one of
   the ids, or it has none and its anonymous id is one), their sessions rows (and any
   other table of the schema keyed by ``(product_id, visitor)``, e.g. a daily rollup),
   the dead letters that mention an id (a keyed scan of the product's dead letters; the
   envelope JSON is searched in Python for each id as a JSON string, JSON-in-a-string,
   or URL-encoded, bounded by characters that cannot be part of an id), the profile
   (attributes, the link to an account), the aliases, and the user rows; aliases and
   users last, so an interrupted run finds every id again: rerunning finishes the job.
3. **Close** the receipt: how many rows of each table went, in total over every run.

Not reached: see README, "Security and privacy" / "Erasure".
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

import msgspec
import sqlalchemy as sa

from sightline.store.db import read_connection
from sightline.store.identity import identities
from sightline.store.queries import as_utc
from sightline.store.rollups import READ_COLUMNS, unrecord_events
from sightline.store.schema import (
    aliases,
    dead_letters,
    erasures,
    events,
    metadata,
    suppressed_ids,
    suppression_lists,
    user_attributes,
    users,
)
from sightline.store.sql import IN_CHUNK, cached_statement, dialect_insert, driver_error

CHUNK_SIZE = 5_000
"""Most rows one erasure transaction deletes."""
DEAD_LETTER_PAGE = 500
"""Dead letters read per page of the scan."""
CLI = "cli"
"""``requested_by`` of an erasure asked for on the command line."""

_json = msgspec.json.Encoder()
_LOCK_NAMESPACE = b"sightline-suppression\x00"


class ErasureReceipt(msgspec.Struct, kw_only=True):
    """What an erasure did; no personal data (never the user id nor any of their ids)."""

    reference: str
    """Opaque: quote it to show the erasure was done."""
    product_id: str
    requested_by: str
    """``cli``, ``server-key:<fingerprint>`` or ``token:<token id>``."""
    requested_at: datetime
    completed_at: datetime | None = None
    """``null`` while it runs, or when a run was interrupted (run it again)."""
    requests: int = 1
    """How many times it was asked for (a repeat finds this receipt)."""
    deleted: dict[str, int] = msgspec.field(default_factory=dict)
    """Rows deleted per table over every run; ``suppressed_ids``: ids added to the list."""


class Erasure(msgspec.Struct, kw_only=True):
    receipt: ErasureReceipt
    transactions: int
    """Transactions this run committed (the suppression, each chunk, the close)."""
    ids: list[str] = msgspec.field(default_factory=list)
    """The person's ids, in memory only (never stored, never answered): for removing
    copies outside the store (the live stream, ``sightline.live_erasure``)."""


# -- hashing and the suppression list --------------------------------------------------


def id_hash(salt: str, product_id: str, external_id: str) -> str:
    """How an id is kept on a suppression list and in a receipt: never in the clear."""
    return hashlib.sha256(f"{salt}\x00{product_id}\x00{external_id}".encode()).hexdigest()


class SuppressionList(msgspec.Struct, frozen=True):
    """A product's suppressed ids (as hashes), at one version."""

    version: int
    salt: str
    hashes: frozenset[str]

    def suppresses(self, product_id: str, external_id: str) -> bool:
        return bool(self.hashes) and id_hash(self.salt, product_id, external_id) in self.hashes


def _lock_key(product_id: str) -> int:
    digest = hashlib.sha256(_LOCK_NAMESPACE + product_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock(conn: sa.Connection, product_ids: Iterable[str], *, exclusive: bool) -> None:
    """PostgreSQL: a transaction-scoped advisory lock per product, in one order.

    A batch takes it shared before it reads the list's version, an erasure exclusive
    while it changes the list: a batch that read the old version has committed before
    the list changes, and a batch that starts later reads the new version. (SQLite's
    ``BEGIN IMMEDIATE`` already runs one writing transaction at a time.)
    """
    if conn.dialect.name != "postgresql":
        return
    statement = _EXCLUSIVE_LOCK if exclusive else _SHARED_LOCK
    for key in sorted({_lock_key(p) for p in product_ids}):
        conn.execute(statement, {"key": key})


_SHARED_LOCK = sa.text("SELECT pg_advisory_xact_lock_shared(:key)")
_EXCLUSIVE_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


def _versions_query(_conn: sa.Connection) -> Any:
    return sa.select(suppression_lists.c.product_id, suppression_lists.c.version).where(
        suppression_lists.c.product_id.in_(sa.bindparam("products", expanding=True))
    )


def lock_for_batch(conn: sa.Connection, product_ids: Iterable[str]) -> dict[str, int]:
    """In a batch's write transaction: the suppression lists' versions of ``product_ids``
    (products without a list are absent), read under the shared lock (see :func:`_lock`)."""
    wanted = sorted(set(product_ids))
    if wanted and conn.dialect.name == "postgresql":
        return _lock_for_batch_pg(conn, wanted)
    _lock(conn, wanted, exclusive=False)
    if not wanted:
        return {}
    query = cached_statement(conn, "suppression_versions", _versions_query)
    return {p: int(v) for p, v in conn.execute(query, {"products": wanted})}


_PG_SHARED_LOCK = "SELECT pg_advisory_xact_lock_shared(%s)"
_PG_VERSIONS = "SELECT product_id, version FROM suppression_lists WHERE product_id = ANY(%s)"


def _lock_for_batch_pg(conn: sa.Connection, wanted: list[str]) -> dict[str, int]:
    """:func:`lock_for_batch` on PostgreSQL in one round trip: the transaction's
    ``BEGIN``, the shared locks and the versions' read go in one pipeline. Still two
    statements: the server starts the read (and takes its snapshot) only once the locks
    are granted, so it sees every erasure that committed before."""
    driver = conn.connection.driver_connection
    statement = _PG_SHARED_LOCK
    try:
        with driver.cursor() as locks, driver.cursor() as versions:  # type: ignore[union-attr]
            with driver.pipeline():  # type: ignore[union-attr]
                for key in sorted({_lock_key(p) for p in wanted}):
                    locks.execute(_PG_SHARED_LOCK, (key,))
                versions.execute(_PG_VERSIONS, (wanted,))
            statement = _PG_VERSIONS
            return {p: int(v) for p, v in versions.fetchall()}
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, statement, exc) from exc  # the worker tells an outage from a bug


def load_suppression(conn: sa.Connection, product_id: str) -> SuppressionList | None:
    """A product's whole suppression list, or ``None`` when it has none."""
    head = conn.execute(
        sa.select(suppression_lists.c.version, suppression_lists.c.salt).where(
            suppression_lists.c.product_id == product_id
        )
    ).one_or_none()
    if head is None:
        return None
    hashes = conn.execute(
        sa.select(suppressed_ids.c.id_hash).where(suppressed_ids.c.product_id == product_id)
    ).scalars()
    return SuppressionList(version=int(head.version), salt=head.salt, hashes=frozenset(hashes))


def is_suppressed(conn: sa.Connection, product_id: str, external_id: str) -> bool:
    """Whether ``external_id`` is on the product's list (one query; for tests and tools)."""
    found = load_suppression(conn, product_id)
    return found is not None and found.suppresses(product_id, external_id)


def _salt(conn: sa.Connection, product_id: str, now: datetime) -> str:
    conn.execute(
        dialect_insert(conn, suppression_lists)
        .values(product_id=product_id, salt=secrets.token_hex(16), version=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["product_id"])
    )
    salt: str = conn.execute(
        sa.select(suppression_lists.c.salt).where(suppression_lists.c.product_id == product_id)
    ).scalar_one()
    return salt


# -- whose ids -------------------------------------------------------------------------


def _person(conn: sa.Connection, product_id: str, external_id: str) -> str:
    """The user ``external_id`` is, following aliases (an anonymous or merged id asked
    for is the person it was linked to)."""
    seen = {external_id}
    current = external_id
    for _ in range(32):
        owner = conn.execute(
            sa.select(users.c.external_id)
            .join(aliases, aliases.c.user_id == users.c.id)
            .where(aliases.c.product_id == product_id, aliases.c.alias == current)
        ).scalar()
        if owner is None or owner in seen:
            break
        seen.add(owner)
        current = owner
    return current


def person_ids(conn: sa.Connection, product_id: str, external_id: str) -> list[str]:
    """Every id of the person: the user id (after following aliases) and its aliases."""
    root = _person(conn, product_id, external_id)
    ids = identities(product_id, root)
    return sorted({external_id, *conn.execute(sa.select(ids.c.name)).scalars()})


# -- the erasure -----------------------------------------------------------------------


class _Run:
    """One run of an erasure: its receipt row and the transactions it commits."""

    def __init__(self, engine: sa.Engine, product_id: str, chunk_size: int) -> None:
        self.engine = engine
        self.product_id = product_id
        self.chunk_size = chunk_size
        self.reference = ""
        self.transactions = 0

    def add(self, conn: sa.Connection, counts: dict[str, int]) -> None:
        """Add ``counts`` to the receipt, in the transaction that deleted those rows."""
        current = conn.execute(
            sa.select(erasures.c.deleted).where(erasures.c.id == self.reference)
        ).scalar_one()
        total = dict(current or {})
        for table, n in counts.items():
            total[table] = total.get(table, 0) + n
        conn.execute(
            sa.update(erasures).where(erasures.c.id == self.reference).values(deleted=total)
        )

    def delete_chunks(self, table: str, build: Any) -> None:
        """Run ``build(limit)`` (a DELETE of at most ``limit`` rows) in transactions of
        its own until one deletes fewer than the limit."""
        while True:
            with self.engine.begin() as conn:
                n = conn.execute(build(self.chunk_size)).rowcount
                if n:
                    self.add(conn, {table: n})
            self.transactions += 1
            if n < self.chunk_size:
                return

    def delete_events(self, where: sa.ColumnElement[bool]) -> None:
        """Delete the matching events in transactions of at most ``chunk_size``, each
        taking its events out of the breakdowns' rollup (``value_days``) as it goes."""
        columns = [events.c[name] for name in _ROLLUP_COLUMNS]
        while True:
            with self.engine.begin() as conn:
                found = [
                    row._asdict()
                    for row in conn.execute(sa.select(*columns).where(where).limit(self.chunk_size))
                ]
                if found:
                    unrecord_events(conn, found)
                    n = conn.execute(
                        sa.delete(events).where(events.c.id.in_([r["id"] for r in found]))
                    ).rowcount
                    self.add(conn, {"events": n})
            self.transactions += 1
            if len(found) < self.chunk_size:
                return


_ROLLUP_COLUMNS = ("id", *READ_COLUMNS)
"""What ``unrecord_events`` reads of an event, and its id."""


def _limited_delete(
    table: sa.Table, keys: Sequence[sa.Column[Any]], where: sa.ColumnElement[bool], limit: int
) -> sa.Delete:
    chosen = sa.select(*keys).where(where).limit(limit)
    condition = keys[0].in_(chosen) if len(keys) == 1 else sa.tuple_(*keys).in_(chosen)
    return sa.delete(table).where(condition)


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield list(values[start : start + IN_CHUNK])


def forget_user(
    engine: sa.Engine,
    product_id: str,
    external_id: str,
    *,
    requested_by: str,
    chunk_size: int = CHUNK_SIZE,
) -> Erasure:
    """Erase the person ``external_id`` of ``product_id`` and suppress their ids (module
    doc). Idempotent and resumable: a second run finishes what an interrupted one left,
    and after a complete one deletes nothing."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    run = _Run(engine, product_id, chunk_size)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _lock(conn, (product_id,), exclusive=True)
        salt = _salt(conn, product_id, now)
        suppressed = person_ids(conn, product_id, external_id)
        added = _suppress(conn, product_id, salt, suppressed, now)
        run.reference = _open_receipt(
            conn, product_id, id_hash(salt, product_id, external_id), requested_by, now
        )
        run.add(conn, {"suppressed_ids": added})
    run.transactions += 1
    with read_connection(engine) as conn:
        ids = person_ids(conn, product_id, external_id)
    for part in _chunks(ids):
        # The person's events as the two alternatives of identity.user_condition, apart:
        # each a range of its index (ix_events_product_user, ix_events_product_anonymous);
        # OR-ed, the databases read every event of the product.
        for branch in (
            events.c.user_id.in_(part),
            sa.and_(events.c.user_id.is_(None), events.c.anonymous_id.in_(part)),
        ):
            run.delete_events(sa.and_(events.c.product_id == product_id, branch))
    for table in _visitor_tables():
        keys = [c for c in table.primary_key.columns]
        for part in _chunks(ids):
            run.delete_chunks(
                table.name,
                lambda limit, table=table, keys=keys, part=part: _limited_delete(
                    table,
                    keys,
                    sa.and_(table.c.product_id == product_id, table.c.visitor.in_(part)),
                    limit,
                ),
            )
    _delete_dead_letters(run, ids)
    _delete_profile(run, ids)
    with engine.begin() as conn:
        conn.execute(
            sa.update(erasures)
            .where(erasures.c.id == run.reference)
            .values(completed_at=datetime.now(UTC))
        )
        receipt = _receipt(conn, run.reference)
    run.transactions += 1
    assert receipt is not None
    return Erasure(receipt=receipt, transactions=run.transactions, ids=sorted({*suppressed, *ids}))


def count_outside(
    engine: sa.Engine, reference: str, counts: dict[str, int]
) -> ErasureReceipt | None:
    """Add what an erasure removed outside the store (the live stream) to its receipt."""
    with engine.begin() as conn:
        current = conn.execute(
            sa.select(erasures.c.deleted).where(erasures.c.id == reference)
        ).scalar()
        if current is None:
            return None
        total = dict(current)
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
        conn.execute(sa.update(erasures).where(erasures.c.id == reference).values(deleted=total))
        return _receipt(conn, reference)


def _suppress(
    conn: sa.Connection, product_id: str, salt: str, ids: Sequence[str], now: datetime
) -> int:
    """Put ``ids`` on the list and bump its version; how many were not on it yet."""
    hashes = sorted({id_hash(salt, product_id, i) for i in ids})
    known: set[str] = set()
    for part in _chunks(hashes):
        known.update(
            conn.execute(
                sa.select(suppressed_ids.c.id_hash).where(
                    suppressed_ids.c.product_id == product_id, suppressed_ids.c.id_hash.in_(part)
                )
            ).scalars()
        )
    new = [h for h in hashes if h not in known]
    if new:
        conn.execute(
            sa.insert(suppressed_ids),
            [{"product_id": product_id, "id_hash": h, "created_at": now} for h in new],
        )
    conn.execute(
        sa.update(suppression_lists)
        .where(suppression_lists.c.product_id == product_id)
        .values(version=suppression_lists.c.version + 1, updated_at=now)
    )
    return len(new)


def _open_receipt(
    conn: sa.Connection, product_id: str, subject: str, requested_by: str, now: datetime
) -> str:
    found = conn.execute(
        sa.select(erasures.c.id).where(
            erasures.c.product_id == product_id, erasures.c.subject_hash == subject
        )
    ).scalar()
    if found is not None:
        conn.execute(
            sa.update(erasures)
            .where(erasures.c.id == found)
            .values(requests=erasures.c.requests + 1, completed_at=None)
        )
        return str(found)
    reference = "er_" + secrets.token_hex(12)
    conn.execute(
        sa.insert(erasures).values(
            id=reference,
            product_id=product_id,
            subject_hash=subject,
            requested_by=requested_by[:80],
            requested_at=now,
            completed_at=None,
            requests=1,
            deleted={},
        )
    )
    return reference


def _receipt(conn: sa.Connection, reference: str) -> ErasureReceipt | None:
    row = conn.execute(sa.select(erasures).where(erasures.c.id == reference)).one_or_none()
    if row is None:
        return None
    requested_at = as_utc(row.requested_at)
    assert requested_at is not None
    return ErasureReceipt(
        reference=row.id,
        product_id=row.product_id,
        requested_by=row.requested_by,
        requested_at=requested_at,
        completed_at=as_utc(row.completed_at),
        requests=int(row.requests),
        deleted={str(k): int(v) for k, v in (row.deleted or {}).items()},
    )


def list_receipts(conn: sa.Connection, product_id: str | None = None) -> list[ErasureReceipt]:
    """Erasure receipts, newest first."""
    query = sa.select(erasures.c.id).order_by(erasures.c.requested_at.desc(), erasures.c.id)
    if product_id is not None:
        query = query.where(erasures.c.product_id == product_id)
    return [r for ref in conn.execute(query).scalars() if (r := _receipt(conn, ref)) is not None]


def _visitor_tables() -> list[sa.Table]:
    """Tables of the schema keyed by a visitor of a product (the sessions, rollups)."""
    return [
        table
        for table in metadata.sorted_tables
        if {"product_id", "visitor"} <= set(table.c.keys())
        and {"product_id", "visitor"} <= {c.name for c in table.primary_key.columns}
    ]


# -- dead letters ----------------------------------------------------------------------


def _needles(ids: Sequence[str]) -> list[str]:
    """How each id can appear in a dead letter's envelope serialised as JSON: as a JSON
    string, a JSON string inside a JSON string (a raw body), URL-encoded (a query string)."""
    found: set[str] = set()
    for value in ids:
        if not value:
            continue
        once = _json.encode(value).decode()[1:-1]
        twice = _json.encode(once).decode()[1:-1]
        found.update((once, twice, quote(value, safe=""), quote_plus(value, safe="")))
    return sorted(found)


def _mentions(needles: Sequence[str]) -> re.Pattern[str]:
    """An id, not inside a longer word (``u1`` is not in ``u10``)."""
    alternatives = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
    return re.compile(rf"(?<![0-9A-Za-z_])(?:{alternatives})(?![0-9A-Za-z_])")


def _delete_dead_letters(run: _Run, ids: Sequence[str]) -> None:
    needles = _needles(ids)
    if not needles:
        return
    pattern = _mentions(needles)
    page = min(DEAD_LETTER_PAGE, run.chunk_size)
    after = 0
    while True:
        with read_connection(run.engine) as conn:
            rows = conn.execute(
                sa.select(dead_letters.c.id, dead_letters.c.envelope)
                .where(dead_letters.c.product_id == run.product_id, dead_letters.c.id > after)
                .order_by(dead_letters.c.id)
                .limit(page)
            ).all()
        if not rows:
            return
        after = int(rows[-1].id)
        matched = [int(r.id) for r in rows if pattern.search(_json.encode(r.envelope).decode())]
        if matched:
            with run.engine.begin() as conn:
                n = conn.execute(sa.delete(dead_letters).where(dead_letters.c.id.in_(matched)))
                run.add(conn, {"dead_letters": n.rowcount})
            run.transactions += 1
        if len(rows) < page:
            return


# -- the profile -----------------------------------------------------------------------


def _delete_profile(run: _Run, ids: Sequence[str]) -> None:
    """Attributes and anonymous ids in chunks; then the rest of the aliases, the account
    links and the user rows together."""
    product_id = run.product_id
    with read_connection(run.engine) as conn:
        user_ids: list[int] = []
        for part in _chunks(ids):
            user_ids.extend(
                int(i)
                for i in conn.execute(
                    sa.select(users.c.id).where(
                        users.c.product_id == product_id, users.c.external_id.in_(part)
                    )
                ).scalars()
            )
    for start in range(0, len(user_ids), IN_CHUNK):
        part_ids = user_ids[start : start + IN_CHUNK]
        run.delete_chunks(
            "user_attributes",
            lambda limit, part_ids=part_ids: _limited_delete(
                user_attributes,
                (user_attributes.c.user_id, user_attributes.c.name),
                user_attributes.c.user_id.in_(part_ids),
                limit,
            ),
        )
    # Anonymous ids that name no user row ("leaves") may be many: in chunks. Once the
    # events and dead letters are gone they lead nowhere else, so an interrupted run loses
    # nothing by their going first. The aliases that are users themselves (merged ids)
    # and the user rows go together, last.
    for start in range(0, len(user_ids), IN_CHUNK):
        part_ids = user_ids[start : start + IN_CHUNK]
        run.delete_chunks(
            "aliases",
            lambda limit, part_ids=part_ids: _limited_delete(
                aliases,
                (aliases.c.product_id, aliases.c.alias),
                sa.and_(
                    aliases.c.product_id == product_id,
                    aliases.c.user_id.in_(part_ids),
                    ~sa.exists().where(
                        users.c.product_id == product_id, users.c.external_id == aliases.c.alias
                    ),
                ),
                limit,
            ),
        )
    if not user_ids:
        return
    with run.engine.begin() as conn:
        links = linked = gone = 0
        for start in range(0, len(user_ids), IN_CHUNK):
            part_ids = user_ids[start : start + IN_CHUNK]
            linked += conn.execute(
                sa.delete(aliases).where(
                    aliases.c.product_id == product_id, aliases.c.user_id.in_(part_ids)
                )
            ).rowcount
            links += int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(users)
                    .where(users.c.id.in_(part_ids), users.c.account_id.is_not(None))
                ).scalar_one()
            )
        for start in range(0, len(user_ids), IN_CHUNK):
            part_ids = user_ids[start : start + IN_CHUNK]
            gone += conn.execute(sa.delete(users).where(users.c.id.in_(part_ids))).rowcount
        run.add(conn, {"aliases": linked, "account_links": links, "users": gone})
    run.transactions += 1
