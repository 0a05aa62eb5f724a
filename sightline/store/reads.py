"""The read API's queries (``/api/v1/*``, ``sightline events export``): named functions.

Each takes a connection and returns plain structs; the collector runs them with
``asyncio.to_thread``. Events come newest first, paged by an opaque cursor over
``(timestamp, id)`` (keyset: the n-th page costs what the first does, and events
stored meanwhile neither shift nor repeat a page). Exports stream in constant memory:
a server-side cursor on PostgreSQL, keyset chunks on SQLite.

Filters are portable between SQLite and PostgreSQL: a property filter compares the
JSON value at a path in ``properties`` as text (a string as itself, a number as its
JSON text, ``true``/``false``); the user filter follows aliases and the account filter
includes sub-accounts (:mod:`sightline.store.identity`).
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.model import Event
from sightline.store.db import read_connection
from sightline.store.identity import account_condition, person_branches, user_condition
from sightline.store.lookups import (
    AccountRecord,
    UserRecord,
    _account,
    _account_query,
    _user_query,
    _users,
    find_user,
    get_account,
)
from sightline.store.queries import (
    NEWEST_FIRST,
    DeadLetterRecord,
    as_utc,
    event_from_row,
    newest_of_every_product,
    product_ids,
)
from sightline.store.schema import accounts, aliases, dead_letters, events, users

MAX_PROPERTY_DEPTH = 8
ENRICHMENT_KEYS = ("clock", "geo", "ip", "ua", "campaign", "session")
"""What the worker adds to ``context`` (see ``worker/enricher.py``)."""
ENVELOPE_NOTE = (
    "Envelopes are not kept per stored event: the stored record, its context (what the "
    "client sent there, and the enrichment) are what remains. Dead letters keep theirs."
)


class BadCursor(ValueError):
    pass


class EventQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which events: every field narrows; ``None`` / empty means any."""

    product_id: str | None = None
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    start: datetime | None = None
    """Inclusive."""
    end: datetime | None = None
    """Exclusive."""
    user: str | None = None
    """An external user id or any alias of it (needs ``product_id``)."""
    account: str | None = None
    """An external account id: the account and its sub-accounts (needs ``product_id``)."""
    properties: tuple[tuple[tuple[str, ...], str], ...] = ()
    """(path in ``properties``, value as text) pairs, all of which must hold."""
    include_bots: bool = True


class EventPage(msgspec.Struct, kw_only=True):
    events: list[Event]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next (older) page; ``null`` on the last page."""


def encode_cursor(event: Event) -> str:
    raw = msgspec.json.encode([event.timestamp.astimezone(UTC).isoformat(), event.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, event_id = msgspec.json.decode(raw, type=tuple[datetime, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise BadCursor("not a cursor this API gave") from None
    if when.tzinfo is None:
        raise BadCursor("not a cursor this API gave")
    return when.astimezone(UTC), event_id


def _utc(value: datetime) -> datetime:
    """Bind times as UTC: SQLite stores (and compares) the UTC wall clock as text."""
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _property(conn: sa.Connection, path: tuple[str, ...], value: str) -> sa.ColumnElement[bool]:
    column = events.c.properties
    if conn.dialect.name == "postgresql":
        found = column.op("#>>")(sa.cast(sa.literal(list(path)), sa.ARRAY(sa.Text)))
        return found == value
    json_path = "$" + "".join('."' + key.replace('"', '\\"') + '"' for key in path)
    kind = sa.func.json_type(column, json_path)
    text = sa.case(
        (kind == "true", "true"),
        (kind == "false", "false"),
        else_=sa.cast(sa.func.json_extract(column, json_path), sa.Text),
    )
    return sa.and_(kind.not_in(("object", "array", "null")), text == value)


def _person(conn: sa.Connection, product_id: str, user: str) -> str:
    """The external id of the user whose id or alias is ``user`` (else ``user`` itself)."""
    known = conn.execute(
        sa.select(users.c.external_id).where(
            users.c.product_id == product_id, users.c.external_id == user
        )
    ).first()
    if known is not None:
        return user
    owner = conn.execute(
        sa.select(users.c.external_id)
        .join(aliases, aliases.c.user_id == users.c.id)
        .where(aliases.c.product_id == product_id, aliases.c.alias == user)
    ).scalar()
    return owner if owner is not None else user


def _where(
    conn: sa.Connection, query: EventQuery, *, person: bool = True
) -> list[sa.ColumnElement[bool]]:
    """The query's conditions; ``person=False``: without the user filter's (the caller
    applies :func:`_person` instead)."""
    where: list[sa.ColumnElement[bool]] = []
    if query.product_id is not None:
        where.append(events.c.product_id == query.product_id)
    if query.types:
        where.append(events.c.type.in_(query.types))
    if query.names:
        where.append(events.c.name.in_(query.names))
    if query.start is not None:
        where.append(events.c.timestamp >= _utc(query.start))
    if query.end is not None:
        where.append(events.c.timestamp < _utc(query.end))
    if not query.include_bots:
        where.append(events.c.is_bot.is_(False))
    if query.user is not None or query.account is not None:
        if query.product_id is None:
            raise ValueError("a user or account filter needs a product")
        if query.user is not None and person:
            owner = _person(conn, query.product_id, query.user)
            where.append(user_condition(query.product_id, owner))
        if query.account is not None:
            where.append(account_condition(query.product_id, query.account))
    for path, value in query.properties:
        where.append(_property(conn, path, value))
    return where


def _older_than(when: datetime, event_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(
        events.c.timestamp < when, sa.and_(events.c.timestamp == when, events.c.id < event_id)
    )


def list_events(
    conn: sa.Connection, query: EventQuery, *, limit: int = 50, cursor: str | None = None
) -> EventPage:
    """One page of matching events, newest first (``BadCursor`` for a cursor we did not give)."""
    branches = None
    if query.user is not None and query.product_id is not None:
        owner = _person(conn, query.product_id, query.user)
        branches = person_branches(conn, query.product_id, owner)
    where = _where(conn, query, person=branches is None)
    if cursor is not None:
        where.append(_older_than(*decode_cursor(cursor)))
    if query.product_id is None:
        # every product's (an admin): the newest of each, then of those
        rows: Any = newest_of_every_product(conn, where, limit + 1)
    elif branches is None:
        rows = conn.execute(
            sa.select(events).where(*where).order_by(*NEWEST_FIRST).limit(limit + 1)
        )
    else:
        # A person's events: the newest of each alternative (each a range of its index in
        # time order), then the newest of both.
        parts = [
            sa.select(events).where(*where, b).order_by(*NEWEST_FIRST).limit(limit + 1).subquery()
            for b in branches
        ]
        both = sa.union_all(*(sa.select(part) for part in parts)).subquery("person")
        rows = conn.execute(
            sa.select(both).order_by(both.c.timestamp.desc(), both.c.id.desc()).limit(limit + 1)
        )
    found = [event_from_row(row) for row in rows]
    more = len(found) > limit
    found = found[:limit]
    return EventPage(events=found, next_cursor=encode_cursor(found[-1]) if more else None)


def iter_events(engine: sa.Engine, query: EventQuery, *, chunk: int = 2000) -> Iterator[Event]:
    """Every matching event, newest first, in constant memory.

    PostgreSQL: one query on a server-side cursor, ``chunk`` rows at a time. SQLite:
    keyset chunks, each its own short read transaction (a long export never holds the
    WAL from checkpointing). Every product's (no ``product_id``): each product's events
    so, merged (each a range of ``ix_events_product_time``; no index has the time
    first). Events stored during an export may or may not be in it.
    """
    with read_connection(engine) as conn:
        if query.product_id is None:
            streams = [
                _keyset_chunks(conn, msgspec.structs.replace(query, product_id=product_id), chunk)
                for product_id in product_ids(conn)
            ]
            conn.rollback()
            yield from heapq.merge(*streams, key=_newest_key, reverse=True)
            return
        if conn.dialect.name == "postgresql":
            select = sa.select(events).where(*_where(conn, query)).order_by(*NEWEST_FIRST)
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(select)
            for row in result:
                yield event_from_row(row)
            return
        yield from _keyset_chunks(conn, query, chunk)


def _newest_key(event: Event) -> tuple[datetime, str]:
    return event.timestamp, event.id


def _keyset_chunks(conn: sa.Connection, query: EventQuery, chunk: int) -> Iterator[Event]:
    """The matching events newest first, ``chunk`` at a time, each chunk in a read
    transaction of its own (ended before the chunk's events are yielded)."""
    after: tuple[datetime, str] | None = None
    while True:
        where = _where(conn, query)
        if after is not None:
            where.append(_older_than(*after))
        rows = list(
            conn.execute(sa.select(events).where(*where).order_by(*NEWEST_FIRST).limit(chunk))
        )
        conn.rollback()
        for row in rows:
            yield event_from_row(row)
        if len(rows) < chunk:
            return
        last = event_from_row(rows[-1])
        after = (_utc(last.timestamp), last.id)
        del rows


# -- one event -------------------------------------------------------------------------


class EventDetail(msgspec.Struct, kw_only=True):
    event: Event
    """The stored canonical record (its ``context`` includes the enrichment)."""
    enrichment: dict[str, Any]
    """What the worker added to ``context``: clock, geo, ip, ua, campaign (when present)."""
    envelope: Any = None
    """Always ``null``: see ``envelope_note``."""
    envelope_note: str = ENVELOPE_NOTE


def get_event(conn: sa.Connection, event_id: str) -> EventDetail | None:
    row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
    if row is None:
        return None
    event = event_from_row(row)
    enrichment = {k: event.context[k] for k in ENRICHMENT_KEYS if k in event.context}
    return EventDetail(event=event, enrichment=enrichment)


# -- users and accounts ----------------------------------------------------------------

LAST_EVENTS = 20


class UserProfile(msgspec.Struct, kw_only=True):
    user: UserRecord
    """Profile, attributes (traits) with their types, aliases (anonymous ids and merged ids)."""
    accounts: list[AccountRecord]
    """The user's account, then its parent, grandparent ... (empty without an account)."""
    last_events: list[Event]
    """The newest events of the person, under any of their ids."""


class AccountProfile(msgspec.Struct, kw_only=True):
    account: AccountRecord
    parents: list[AccountRecord]
    """Its parent, grandparent ... up to the root."""
    children: list[AccountRecord]
    """Direct sub-accounts."""
    users: list[str]
    """External ids of the account's own users (at most 200)."""
    last_events: list[Event]
    """The newest events of the account and its sub-accounts."""


def _newest(conn: sa.Connection, product_id: str, where: sa.ColumnElement[bool]) -> list[Event]:
    rows = conn.execute(
        sa.select(events)
        .where(events.c.product_id == product_id, where)
        .order_by(*NEWEST_FIRST)
        .limit(LAST_EVENTS)
    )
    return [event_from_row(row) for row in rows]


def _ancestors(conn: sa.Connection, product_id: str, account: AccountRecord) -> list[AccountRecord]:
    chain: list[AccountRecord] = []
    seen = {account.id}
    parent_id = account.parent_id
    while parent_id is not None and parent_id not in seen and len(chain) < 64:
        seen.add(parent_id)
        parent = get_account(conn, product_id, parent_id)
        if parent is None:
            break
        chain.append(parent)
        parent_id = parent.parent_id
    return chain


def user_profile(conn: sa.Connection, product_id: str, user: str) -> UserProfile | None:
    """The user whose id or alias is ``user``: profile, account chain, newest events."""
    record = find_user(conn, product_id, user)
    if record is None:
        return None
    chain: list[AccountRecord] = []
    if record.account_id is not None:
        own = get_account(conn, product_id, record.account_id)
        if own is not None:
            chain = [own, *_ancestors(conn, product_id, own)]
    return UserProfile(
        user=record,
        accounts=chain,
        last_events=_newest(
            conn, product_id, sa.or_(*person_branches(conn, product_id, record.id))
        ),
    )


def account_profile(conn: sa.Connection, product_id: str, account: str) -> AccountProfile | None:
    record = get_account(conn, product_id, account)
    if record is None:
        return None
    own = sa.select(accounts.c.id).where(
        accounts.c.product_id == product_id, accounts.c.external_id == account
    )
    children = [
        found
        for external_id in conn.execute(
            sa.select(accounts.c.external_id)
            .where(accounts.c.product_id == product_id, accounts.c.parent_id.in_(own))
            .order_by(accounts.c.external_id)
            .limit(500)
        ).scalars()
        if (found := get_account(conn, product_id, external_id)) is not None
    ]
    members = list(
        conn.execute(
            sa.select(users.c.external_id)
            .where(users.c.product_id == product_id, users.c.account_id.in_(own))
            .order_by(users.c.external_id)
            .limit(200)
        ).scalars()
    )
    return AccountProfile(
        account=record,
        parents=_ancestors(conn, product_id, record),
        children=children,
        users=members,
        last_events=_newest(conn, product_id, account_condition(product_id, account)),
    )


# -- dead letters ----------------------------------------------------------------------


class DeadLetterPage(msgspec.Struct, kw_only=True):
    dead_letters: list[DeadLetterRecord]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next (older) page."""


def _dead_letter(row: sa.Row[Any]) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row.id,
        product_id=row.product_id,
        reason=row.reason,
        detail=row.detail,
        envelope=row.envelope,
        created_at=as_utc(row.created_at) or row.created_at,
        replayed_at=as_utc(row.replayed_at),
    )


def dead_letter_page(
    conn: sa.Connection,
    *,
    product_id: str | None,
    include_replayed: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> DeadLetterPage:
    """Dead letters, newest first; ``product_id`` ``None`` means every product's."""
    where: list[sa.ColumnElement[bool]] = []
    if product_id is not None:
        where.append(dead_letters.c.product_id == product_id)
    if not include_replayed:
        where.append(dead_letters.c.replayed_at.is_(None))
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise BadCursor("not a cursor this API gave")
        where.append(dead_letters.c.id < int(cursor))
    rows = list(
        conn.execute(
            sa.select(dead_letters)
            .where(*where)
            .order_by(dead_letters.c.id.desc())
            .limit(limit + 1)
        )
    )
    found = [_dead_letter(row) for row in rows[:limit]]
    more = len(rows) > limit
    return DeadLetterPage(dead_letters=found, next_cursor=str(found[-1].id) if more else None)


def dead_letters_to_replay(
    conn: sa.Connection, ids: Sequence[int] | None = None, *, limit: int = 10_000
) -> list[DeadLetterRecord]:
    """Dead letters not yet replayed (those of ``ids``, or the oldest ``limit``)."""
    query = sa.select(dead_letters).where(dead_letters.c.replayed_at.is_(None))
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(list(ids)))
    return [
        _dead_letter(row) for row in conn.execute(query.order_by(dead_letters.c.id).limit(limit))
    ]


def get_dead_letter(conn: sa.Connection, letter_id: int) -> DeadLetterRecord | None:
    row = conn.execute(sa.select(dead_letters).where(dead_letters.c.id == letter_id)).first()
    return None if row is None else _dead_letter(row)


# -- lists of users and accounts -------------------------------------------------------


class UserPage(msgspec.Struct, kw_only=True):
    users: list[UserRecord]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page (older users)."""


class AccountPage(msgspec.Struct, kw_only=True):
    accounts: list[AccountRecord]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page (older accounts)."""


def _prefix(column: sa.ColumnElement[Any], text: str) -> sa.ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


def _row_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
        raise BadCursor("not a cursor this API gave")
    return int(cursor)


def _newest_first(
    conn: sa.Connection, query: Any, id_column: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of ``query``'s rows by ``id_column`` descending, and the next page's cursor."""
    before = _row_cursor(cursor)
    if before is not None:
        query = query.where(id_column < before)
    rows = list(conn.execute(query.order_by(id_column.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, str(page[-1].id) if len(rows) > limit else None


def user_page(
    conn: sa.Connection,
    product_id: str,
    *,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> UserPage:
    """A product's users, newest first; ``search`` is a prefix of the id or the email."""
    query = _user_query().where(users.c.product_id == product_id)
    if search:
        query = query.where(
            sa.or_(_prefix(users.c.external_id, search), _prefix(users.c.email, search))
        )
    page, next_cursor = _newest_first(conn, query, users.c.id, limit, cursor)
    return UserPage(users=_users(conn, page), next_cursor=next_cursor)


def account_page(
    conn: sa.Connection,
    product_id: str,
    *,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> AccountPage:
    """A product's accounts, newest first; ``search`` is a prefix of the id or the name."""
    query = _account_query().where(accounts.c.product_id == product_id)
    if search:
        query = query.where(
            sa.or_(_prefix(accounts.c.external_id, search), _prefix(accounts.c.name, search))
        )
    page, next_cursor = _newest_first(conn, query, accounts.c.id, limit, cursor)
    return AccountPage(accounts=[_account(row) for row in page], next_cursor=next_cursor)
