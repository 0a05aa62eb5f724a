"""Writing a normalised batch in one transaction, idempotent on (product, message id).

Events go first with ``ON CONFLICT DO NOTHING RETURNING``: only the events that
were really new apply their side effects (user stats, profile operations,
accounts, aliases), so a job that runs twice changes nothing the second time.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import msgspec
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps

from sightline.model import (
    AliasChange,
    Event,
    Normalised,
)
from sightline.store.columns import EVENT_COLUMNS, JSON_COLUMNS, EventColumns
from sightline.store.effects import SideEffects, link_aliases
from sightline.store.matching import inherit_accounts, resolve_identities
from sightline.store.partitions import insert_new_events_sql
from sightline.store.rollups import Deltas, deltas_of, record_visitor_days
from sightline.store.rollups import staged_sql as staged_rollups_sql
from sightline.store.schema import dead_letters, events, users
from sightline.store.sessions import assign_sessions, record_sessions
from sightline.store.sessions import staged_sql as staged_sessions_sql
from sightline.store.sql import (
    IN_CHUNK,
    SqliteRows,
    bulk_insert,
    cached_statement,
    driver_error,
    execute_rows,
    execute_sqlite_rows,
    greatest,
    least,
    pipelined,
    sqlite_times,
)


class DeadLetter(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    envelope: Any
    product_id: str | None = None


class WriteResult(msgspec.Struct):
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    bots_dropped: int = 0
    """Events from bots of products that drop them: counted, neither stored nor dead letters."""
    suppressed: int = 0
    """Events of erased people (a suppressed id, ``sightline users forget``): dropped, counted."""
    refused_changes: int = 0
    """User and account changes the write-key policy refused (``sightline.store.effects``);
    their messages' events are stored."""
    stored_events: list[EventColumns] = msgspec.field(default_factory=list)
    """The newly stored events as written (canonical records): published to the live
    stream once the transaction has committed (``sightline.live``): :meth:`stored_rows`."""

    def add(self, other: WriteResult) -> None:
        self.stored_events.extend(other.stored_events)
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.bots_dropped += other.bots_dropped
        self.suppressed += other.suppressed
        self.refused_changes += other.refused_changes

    def stored_rows(self) -> list[dict[str, Any]]:
        """The newly stored events' rows, a dict each."""
        return [row for stored in self.stored_events for row in stored.rows()]


def write_batch(
    conn: sa.Connection,
    items: Sequence[Normalised],
    dead: Sequence[DeadLetter] = (),
    made: EventRows | None = None,
) -> WriteResult:
    """Write everything in the caller's transaction. ``made``: the items' event rows as
    far as they were made before it (:class:`EventRows`)."""
    now = datetime.now(UTC)
    result = WriteResult(dead_letters=len(dead))
    write_dead_letters(conn, dead, now)
    items = resolve_identities(conn, items)
    rows, owners, all_made = _event_rows(items, made)
    inherit_accounts(conn, rows)
    assigned = assign_sessions(conn, rows)
    new_keys = _insert_events(conn, rows, assigned)
    result.stored = len(new_keys)
    result.duplicates = sum(len(n.events) for n in items) - result.stored
    links: list[tuple[str, AliasChange]] = []
    effects = SideEffects(conn, now)
    for item in items:
        # A message's side effects apply once: when its first event is stored for the
        # first time. Profile-only messages carry an identify/group event for this.
        first = item.events[0]
        key = (first.product_id, first.message_id)
        if key in new_keys and owners[key] is item:
            effects.apply(first.product_id, item)
            links.extend((first.product_id, alias) for alias in item.aliases)
    new_rows = (
        rows
        if len(new_keys) == len(rows)
        else rows.take(i for i, key in enumerate(rows.keys()) if key in new_keys)
    )
    result.stored_events = [new_rows]
    if _rollups_in_python(conn.dialect.name):  # PostgreSQL's went with the insert
        # The rollups made before the transaction count every row made: taken when every
        # one was new (the transaction changes none of what they read: _event_rows).
        rollups = made.rollups if made is not None and all_made and new_rows is rows else None
        _record_stats(conn, new_rows, assigned, rollups)
    users = zip(new_rows["product_id"], new_rows["user_id"], strict=True)
    writes = effects.flush({key for key in users if key[1] is not None})
    with pipelined(conn):  # PostgreSQL: the users' writes in one round trip
        for write in writes:
            write()
        _touch_users(conn, new_rows, now)
    # The users' own anonymous ids first: they were linked before the messages' aliases.
    refused = link_aliases(conn, effects.links + links, now, effects.restricted_links())
    result.refused_changes = effects.refused + refused
    return result


def _rollups_in_python(dialect: str) -> bool:
    """Whether the writer computes the rollups in Python (on PostgreSQL the database
    aggregates the staged events: :func:`_copy_events`)."""
    return dialect != "postgresql"


def _record_stats(
    conn: sa.Connection,
    new_rows: EventColumns,
    assigned: set[str],
    rollups: Deltas | None = None,
) -> None:
    """The newly stored events into the stats' tables: their sessions and the daily
    rollups (``sightline.store.sessions``, ``sightline.store.rollups``; ``rollups``: what
    they add to those, computed already)."""
    record_sessions(conn, new_rows, assigned)
    record_visitor_days(conn, new_rows, rollups)


def write_dead_letters(conn: sa.Connection, dead: Sequence[DeadLetter], now: datetime) -> None:
    if dead:
        conn.execute(
            sa.insert(dead_letters),
            [
                {
                    "product_id": d.product_id,
                    "reason": d.reason,
                    "detail": d.detail,
                    "envelope": d.envelope,
                    "created_at": now,
                }
                for d in dead
            ],
        )


class EventRows:
    """What of a batch's event rows does not depend on the store, made before its
    transaction: each event's row (its columns as :func:`write_batch` inserts them,
    ``sightline.store.columns``) with the dimension columns the stats read
    (``sightline.store.dimensions``) and the JSON text of its properties and context. The
    worker makes them in its prepare step, on its main thread, while its writer thread
    writes the batch before (``worker.rqworker``), so the writing, which one worker
    (SQLite: one process) does at a time, does less.

    :func:`write_batch` takes an event's row from here only for that very event object
    (a message renamed by ``resolve_identities`` or sanitised is a new object: its row is
    made again), and in lists of its own: what a transaction sets in a row (the account,
    the session) is not kept if it rolls back and the batch is written again."""

    def __init__(self, items: Iterable[Normalised], *, dialect: str = "") -> None:
        self._events = [event for item in items for event in item.events]
        self._columns = EventColumns.of(self._events)
        self._at = {id(event): i for i, event in enumerate(self._events)}
        self.rollups: Deltas | None = (
            deltas_of(self._columns) if self._events and _rollups_in_python(dialect) else None
        )
        """What the rows add to the rollups (for the ``dialect`` where Python computes
        that), when every row made is written and new: see :func:`write_batch`."""

    def __len__(self) -> int:
        return len(self._events)

    def index(self, event: Event) -> int | None:
        """Where ``event``'s row is, if made for this very object."""
        at = self._at.get(id(event))  # (self._events keeps each event alive: ids stay)
        return at if at is not None and self._events[at] is event else None

    def take(self, events: Sequence[Event]) -> tuple[EventColumns, bool]:
        """The rows of ``events``, in their order and in lists of their own (those not
        made here made now), and whether they are every row made here, none made now."""
        made = self._columns
        if len(events) == len(self._events) and all(map(operator.is_, events, self._events)):
            return made.take(range(len(made))), True  # (the batch as prepared: most often)
        found = list(map(self.index, events))
        missing = [event for event, at in zip(events, found, strict=True) if at is None]
        fresh = iter(range(len(made), len(made) + len(missing)))  # (their places after made)
        places = [next(fresh) if at is None else at for at in found]
        if missing:
            made += EventColumns.of(missing)
        # (an event comes once: as many places as rows made are every row made)
        return made.take(places), not missing and len(places) == len(self._events)


def _event_rows(
    items: Iterable[Normalised], made: EventRows | None = None
) -> tuple[EventColumns, dict[tuple[str, str], Normalised], bool]:
    """The rows of the items' events (the first of a message that comes twice), which
    item each (product, message id) is of, and whether the rows are every row ``made``
    holds (none made here, none left out).

    What a transaction changes in the rows (``inherit_accounts``: the account;
    ``assign_sessions``: the session) is nothing :func:`~sightline.store.rollups.deltas_of`
    reads: ``made``'s rollups hold for them."""
    owners: dict[tuple[str, str], Normalised] = {}
    firsts: list[Event] = []
    for item in items:
        for event in item.events:
            key = (event.product_id, event.message_id)
            if key in owners:  # the same message twice in one batch: the first one counts
                continue
            owners[key] = item
            firsts.append(event)
    if made is None:
        return EventColumns.of(firsts), owners, False
    rows, all_made = made.take(firsts)
    return rows, owners, all_made


_EVENT_TIMES = frozenset(c.name for c in events.columns if isinstance(c.type, sa.DateTime))
_SQLITE_INSERT_EVENTS = SqliteRows(
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}) "
    "ON CONFLICT (product_id, message_id) DO NOTHING",
    len(EVENT_COLUMNS),
)
_TIMES_AT = tuple(i for i, c in enumerate(EVENT_COLUMNS) if c in _EVENT_TIMES)


def _event_values(rows: EventColumns) -> list[Sequence[Any]]:
    """The rows' columns in the ``events`` table's order, JSON as its text."""
    return [rows.texts[name] if name in JSON_COLUMNS else rows[name] for name in EVENT_COLUMNS]


def _sqlite_event_columns(rows: EventColumns) -> list[Sequence[Any]]:
    """The rows' values as SQLAlchemy's SQLite types would bind them, without its
    per-value work: column by column, only times (a column at a time,
    :func:`sqlite_times`) converted, JSON as the text made already."""
    columns = _event_values(rows)
    for i in _TIMES_AT:
        columns[i] = sqlite_times(columns[i])
    return columns


def insert_sqlite_events(conn: sa.Connection, rows: EventColumns) -> int:
    """SQLite: insert the event rows that are new (``ON CONFLICT DO NOTHING``), many rows
    per statement (``sql.execute_sqlite_rows``); how many went in."""
    if not len(rows):
        return 0
    return execute_sqlite_rows(conn, _SQLITE_INSERT_EVENTS, _sqlite_event_columns(rows))


def _insert_events(
    conn: sa.Connection, rows: EventColumns, assigned: set[str]
) -> set[tuple[str, str]]:
    """Insert the rows that are new; the keys of those. PostgreSQL records their stats
    too (``assigned``: the events given a session by
    ``sightline.store.sessions.assign_sessions``)."""
    if not len(rows):
        return set()
    if conn.dialect.name == "sqlite":
        # BEGIN IMMEDIATE holds the write lock: nobody else inserts until we commit, so
        # when fewer rows went in than were sent, the ids we generated tell which did.
        if insert_sqlite_events(conn, rows) == len(rows):
            return set(rows.keys())
        key_of = dict(zip(rows["id"], rows.keys(), strict=True))
        ids = list(key_of)
        stored: set[tuple[str, str]] = set()
        query = cached_statement(conn, "event_ids", _event_ids_query)
        for start in range(0, len(ids), IN_CHUNK):
            for (event_id,) in conn.execute(query, {"ids": ids[start : start + IN_CHUNK]}):
                stored.add(key_of[event_id])
        return stored
    return _copy_events(conn, rows, assigned)


_PG_STAGE = "sightline_events_in"
_PG_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGE} "
    "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_PG_COPY_TEXT = f"COPY {_PG_STAGE} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
_PG_COPY = f"{_PG_COPY_TEXT} (FORMAT BINARY)"


def _binary_type(column: sa.Column[Any]) -> str:
    """The type a binary ``COPY`` sends a column's values as (PostgreSQL applies no cast
    to binary data: the stage's own type, or one with its binary form; ``varchar(n)``
    takes ``text``'s and still refuses a longer value)."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "jsonb"
    if isinstance(kind, sa.DateTime) and kind.timezone:
        return "timestamptz"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.String):
        return "text"
    raise TypeError(f"events.{column.name}: no binary COPY type for {kind!r}")


_PG_COPY_TYPES = tuple(_binary_type(c) for c in events.columns)


def _sent_as(kind: str) -> tuple[str, ...]:
    """The columns sent as ``kind``."""
    return tuple(c for c, t in zip(EVENT_COLUMNS, _PG_COPY_TYPES, strict=True) if t == kind)


_TEXTS = _sent_as("text")
_TIMES = _sent_as("timestamptz")
_FLAGS = _sent_as("bool")
_TEXT_TYPES = frozenset((str, type(None)))
_DATETIME = frozenset((datetime,))
_BOOL = frozenset((bool,))
_ZONE = operator.attrgetter("tzinfo")


def _binary_ready(rows: EventColumns) -> bool:
    """Whether binary ``COPY`` takes every value as text ``COPY`` would: text as ``str``
    (or ``None``), times as ``datetime`` with a time zone, flags as ``bool`` (the JSON
    goes as the texts made for it either way). Otherwise the batch goes as text (a naive
    time is then the server's wall clock, a number a text column's digits): binary
    dumpers refuse such values half-way through the ``COPY``, which would fail the whole
    transaction. A few type checks in C, a column at a time."""

    def values(names: tuple[str, ...]) -> Iterable[Any]:
        return chain.from_iterable(rows[name] for name in names)

    if not _TEXT_TYPES.issuperset(map(type, values(_TEXTS))):
        return False
    times = [t for t in values(_TIMES) if t is not None]
    if not _DATETIME.issuperset(map(type, times)) or None in set(map(_ZONE, times)):
        return False
    return _BOOL.issuperset(map(type, values(_FLAGS)))


# Through the dedup keys of the partitioned table (sightline/store/partitions.py); the
# stage keeps the new events only, for the stats' statements sent behind it.
_PG_MERGE = insert_new_events_sql(_PG_STAGE, EVENT_COLUMNS, unstage=True)
_PG_SESSIONS = staged_sessions_sql(_PG_STAGE)
_PG_ROLLUPS = staged_rollups_sql(_PG_STAGE)


_STAGE_READY = "sightline_events_stage"
_STAGE_FILLED = "sightline_events_stage_filled"
"""The transaction whose batch the stage holds (conn.info; the object itself)."""
_PG_EMPTY_STAGE = f"TRUNCATE {_PG_STAGE}"  # not DELETE: a fresh file keeps COPY order


def _forget_stage(conn: sa.Connection) -> None:
    """A rolled back transaction may have created the stage: create it again next time."""
    conn.connection.info.pop(_STAGE_READY, None)


def _copy_events(
    conn: sa.Connection, rows: EventColumns, assigned: set[str]
) -> set[tuple[str, str]]:
    """PostgreSQL: ``COPY`` the rows into a session-local stage (binary: half the
    worker's time per row of text ``COPY``, which a batch with a value binary ``COPY``
    refuses still takes: :func:`_binary_ready`), then, in one pipeline
    (one round trip), one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``
    that leaves the new events alone in the stage, and the statements that add them to
    the sessions and the daily rollups from there (``sightline.store.sessions``,
    ``sightline.store.rollups``: aggregated in the database, nothing sent per row). No
    statement text per batch size to build and parse (what a multi-row ``INSERT ...
    VALUES`` costs). The stage is emptied at commit (``ON COMMIT DELETE ROWS``) and kept
    for the connection's next batch."""
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    stats = driver.cursor()  # type: ignore[union-attr]
    statement = _PG_COPY
    info = conn.connection.info
    try:
        if not info.get(_STAGE_READY):
            # Once per connection (a round trip saved per batch), unless the transaction
            # that created it rolls back: the stage goes with it (see _forget_stage).
            if not sa.event.contains(conn.engine, "rollback", _forget_stage):
                sa.event.listen(conn.engine, "rollback", _forget_stage)
            cursor.execute(_PG_CREATE_STAGE)
            info[_STAGE_READY] = True
        transaction = conn.get_transaction()
        if transaction is not None and info.get(_STAGE_FILLED) is transaction:
            # An earlier batch of this very transaction is still in the stage (emptied
            # at commit only): the stats read the stage as this batch's new events.
            statement = _PG_EMPTY_STAGE
            cursor.execute(_PG_EMPTY_STAGE)
            statement = _PG_COPY
        info[_STAGE_FILLED] = transaction
        binary = _binary_ready(rows)
        if binary:
            set_json_dumps(str, cursor)  # the JSON texts are made already: sent as they are
        else:
            statement = _PG_COPY_TEXT
        with cursor.copy(statement) as copy:
            if binary:
                copy.set_types(_PG_COPY_TYPES)
            write = copy.write_row
            for values in zip(*_event_values(rows), strict=True):
                write(values)
        statement = _PG_MERGE
        with driver.pipeline():  # type: ignore[union-attr]
            cursor.execute(_PG_MERGE)
            # Errors are raised when the pipeline ends: named after the merge, the first.
            stats.execute(_PG_SESSIONS, (sorted(assigned),))
            for rollup in _PG_ROLLUPS:
                stats.execute(rollup)
        return {(product_id, message_id) for product_id, message_id in cursor.fetchall()}
    except conn.dialect.loaded_dbapi.Error as exc:
        info.pop(_STAGE_READY, None)
        raise driver_error(conn, statement, exc) from exc
    finally:
        stats.close()
        cursor.close()


def _event_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(events.c.id).where(events.c.id.in_(sa.bindparam("ids", expanding=True)))


def _touch_users(conn: sa.Connection, rows: EventColumns, now: datetime) -> None:
    """first_seen / last_seen / event_count of every identified user in the new events."""
    stats: dict[tuple[str, str], list[Any]] = {}  # [first_seen, last_seen, event_count]
    for product_id, user_id, seen in zip(
        rows["product_id"], rows["user_id"], rows["timestamp"], strict=True
    ):
        if user_id is None:
            continue
        key = (product_id, user_id)
        s = stats.get(key)
        if s is None:
            stats[key] = [seen, seen, 1]
        else:
            if seen < s[0]:
                s[0] = seen
            if seen > s[1]:
                s[1] = seen
            s[2] += 1
    if not stats:
        return
    keys = sorted(stats)  # a stable lock order between workers
    execute_rows(
        conn,
        cached_statement(conn, "touch_users", _touch_users_statement),
        _TOUCH_COLUMNS,
        [
            {
                "product_id": k[0],
                "external_id": k[1],
                "first_seen": stats[k][0],
                "last_seen": stats[k][1],
                "event_count": stats[k][2],
                "payment_ids": {},
                "created_at": now,
                "updated_at": now,
            }
            for k in keys
        ],
    )


_TOUCH_COLUMNS = (
    "product_id",
    "external_id",
    "first_seen",
    "last_seen",
    "event_count",
    "payment_ids",
    "created_at",
    "updated_at",
)


def _touch_users_statement(conn: sa.Connection) -> Any:
    # One statement for the batch on PostgreSQL (arrays), not one execution per user.
    insert = bulk_insert(conn, users, _TOUCH_COLUMNS)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["product_id", "external_id"],
        set_={
            "first_seen": sa.func.coalesce(
                least(conn, users.c.first_seen, excluded.first_seen), excluded.first_seen
            ),
            "last_seen": sa.func.coalesce(
                greatest(conn, users.c.last_seen, excluded.last_seen), excluded.last_seen
            ),
            "event_count": users.c.event_count + excluded.event_count,
            "updated_at": excluded.updated_at,
        },
    )
