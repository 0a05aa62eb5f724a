"""Small read queries behind the seed dialects' read APIs (Fuzy, Pyze profiles, DAS search).

Each function takes a connection and returns plain structs; the collector runs
them with ``asyncio.to_thread`` so the event loop never waits on the database.
Only read endpoints and Fuzy's product management use them: ingestion never
queries the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa

from sightline.model import Event
from sightline.store.db import read_connection
from sightline.store.products import (
    Product,
    ProductSettings,
    create_product,
    get_product,
    list_products,
    update_product,
)
from sightline.store.queries import as_utc, event_from_row
from sightline.store.schema import accounts, aliases, events, products, user_attributes, users

T = TypeVar("T")

OWNER_SETTING = "created_by"
"""``products.settings`` key naming the product whose server key created this one."""


class AccountRecord(msgspec.Struct, kw_only=True):
    id: str
    name: str | None = None
    parent_id: str | None = None
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    payment_ids: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AliasRecord(msgspec.Struct, frozen=True):
    alias: str
    kind: str


class UserRecord(msgspec.Struct, kw_only=True):
    id: str
    account_id: str | None = None
    email: str | None = None
    mobile: str | None = None
    payment_ids: dict[str, str] = msgspec.field(default_factory=dict)
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    attribute_types: dict[str, str] = msgspec.field(default_factory=dict)
    aliases: list[AliasRecord] = msgspec.field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    event_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


# -- products --------------------------------------------------------------------------


def managed_products(conn: sa.Connection, product_id: str) -> list[Product]:
    """The product a server key belongs to, then the products that key created."""
    owned = {
        row.id
        for row in conn.execute(sa.select(products.c.id, products.c.settings))
        if isinstance(row.settings, dict) and row.settings.get(OWNER_SETTING) == product_id
    }
    return [p for p in list_products(conn) if p.id == product_id or p.id in owned]


def create_managed_product(
    conn: sa.Connection, owner_id: str, name: str, settings: ProductSettings
) -> Product:
    """A new product with its own keys, remembered as created by ``owner_id``'s key."""
    product = create_product(conn, name, allowed_origins=settings.allowed_origins or ())
    conn.execute(
        sa.update(products)
        .where(products.c.id == product.id)
        .values(settings={OWNER_SETTING: owner_id})
    )
    changed = update_product(conn, product.id, settings)
    assert changed is not None
    return changed


class NotManaged(Exception):
    """The product exists, but the key's product neither is it nor created it."""


def configure_managed_product(
    conn: sa.Connection, owner_id: str, product_id: str, settings: ProductSettings
) -> Product | None:
    """Change a product ``owner_id``'s key manages; ``None`` when there is no such product.

    Raises :class:`NotManaged` for someone else's product.
    """
    if product_id not in {p.id for p in managed_products(conn, owner_id)}:
        if get_product(conn, product_id) is not None:
            raise NotManaged(product_id)
        return None
    return update_product(conn, product_id, settings)


# -- accounts --------------------------------------------------------------------------


def _account_query() -> sa.Select[Any]:
    parent = accounts.alias("parent")
    return sa.select(accounts, parent.c.external_id.label("parent_external_id")).outerjoin(
        parent, parent.c.id == accounts.c.parent_id
    )


def _account(row: sa.Row[Any]) -> AccountRecord:
    return AccountRecord(
        id=row.external_id,
        name=row.name,
        parent_id=row.parent_external_id,
        traits=dict(row.traits or {}),
        payment_ids=dict(row.payment_ids or {}),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def get_account(conn: sa.Connection, product_id: str, external_id: str) -> AccountRecord | None:
    row = conn.execute(
        _account_query().where(
            accounts.c.product_id == product_id, accounts.c.external_id == external_id
        )
    ).first()
    return None if row is None else _account(row)


def list_accounts(
    conn: sa.Connection, product_id: str, *, limit: int = 100, offset: int = 0
) -> list[AccountRecord]:
    query = (
        _account_query()
        .where(accounts.c.product_id == product_id)
        .order_by(accounts.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [_account(row) for row in conn.execute(query)]


# -- users -----------------------------------------------------------------------------


def _user_query() -> sa.Select[Any]:
    return sa.select(users, accounts.c.external_id.label("account_external_id")).outerjoin(
        accounts, accounts.c.id == users.c.account_id
    )


def _users(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[UserRecord]:
    ids = [row.id for row in rows]
    attrs: dict[int, list[sa.Row[Any]]] = {}
    names: dict[int, list[AliasRecord]] = {}
    if ids:
        for attr in conn.execute(
            sa.select(user_attributes)
            .where(user_attributes.c.user_id.in_(ids))
            .order_by(user_attributes.c.name)
        ):
            attrs.setdefault(attr.user_id, []).append(attr)
        for alias in conn.execute(
            sa.select(aliases.c.user_id, aliases.c.alias, aliases.c.kind)
            .where(aliases.c.user_id.in_(ids))
            .order_by(aliases.c.created_at, aliases.c.alias)
        ):
            names.setdefault(alias.user_id, []).append(AliasRecord(alias.alias, alias.kind))
    return [
        UserRecord(
            id=row.external_id,
            account_id=row.account_external_id,
            email=row.email,
            mobile=row.mobile,
            payment_ids=dict(row.payment_ids or {}),
            attributes={a.name: a.value for a in attrs.get(row.id, [])},
            attribute_types={a.name: a.type for a in attrs.get(row.id, [])},
            aliases=names.get(row.id, []),
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
            event_count=row.event_count,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )
        for row in rows
    ]


def get_user(conn: sa.Connection, product_id: str, external_id: str) -> UserRecord | None:
    rows = list(
        conn.execute(
            _user_query().where(
                users.c.product_id == product_id, users.c.external_id == external_id
            )
        )
    )
    return _users(conn, rows)[0] if rows else None


def find_user(conn: sa.Connection, product_id: str, id_or_alias: str) -> UserRecord | None:
    """The user whose external id, or one of whose aliases, is ``id_or_alias``."""
    found = get_user(conn, product_id, id_or_alias)
    if found is not None:
        return found
    rows = list(
        conn.execute(
            _user_query()
            .join(aliases, aliases.c.user_id == users.c.id)
            .where(aliases.c.product_id == product_id, aliases.c.alias == id_or_alias)
        )
    )
    return _users(conn, rows)[0] if rows else None


def list_users(
    conn: sa.Connection, product_id: str, *, limit: int = 100, offset: int = 0
) -> list[UserRecord]:
    query = (
        _user_query()
        .where(users.c.product_id == product_id)
        .order_by(users.c.id)
        .limit(limit)
        .offset(offset)
    )
    return _users(conn, list(conn.execute(query)))


# -- entity events (Data Analytics Service search) -------------------------------------


class EntitySearch(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    entity_type: str
    entity_id: str
    account_id: str
    user_id: str
    recording_ids: tuple[str, ...]
    latest: bool = False
    page: int = 1
    page_size: int = 10


def search_entity_events(conn: sa.Connection, search: EntitySearch) -> tuple[list[Event], int]:
    """Events about one entity in the given recordings, newest first, and how many match.

    Whatever dialect wrote them: the filter is on canonical columns. ``latest``
    keeps the newest event of each recording before paging.
    """
    where = sa.and_(
        events.c.product_id == search.product_id,
        events.c.entity_type == search.entity_type,
        events.c.entity_id == search.entity_id,
        events.c.account_id == search.account_id,
        events.c.user_id == search.user_id,
        events.c.recording_id.in_(search.recording_ids),
    )
    newest_first = (events.c.timestamp.desc(), events.c.id.desc())
    offset = (search.page - 1) * search.page_size
    if search.latest:
        newest: dict[str, Event] = {}
        for row in conn.execute(sa.select(events).where(where).order_by(*newest_first)):
            newest.setdefault(row.recording_id, event_from_row(row))
        found = list(newest.values())
        return found[offset : offset + search.page_size], len(found)
    total = int(
        conn.execute(sa.select(sa.func.count()).select_from(events).where(where)).scalar_one()
    )
    rows = conn.execute(
        sa.select(events)
        .where(where)
        .order_by(*newest_first)
        .limit(search.page_size)
        .offset(offset)
    )
    return [event_from_row(row) for row in rows], total


# -- running them ----------------------------------------------------------------------


def read(engine: sa.Engine, query: Callable[[sa.Connection], T]) -> T:
    """Run ``query`` on a read-only connection of its own (call it through
    ``asyncio.to_thread``): on SQLite a deferred transaction, which never blocks a writer."""
    with read_connection(engine) as conn:
        return query(conn)


def write(engine: sa.Engine, change: Callable[[sa.Connection], T]) -> T:
    """Run ``change`` in a transaction of its own (call it through ``asyncio.to_thread``)."""
    with engine.begin() as conn:
        return change(conn)
