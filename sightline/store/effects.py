"""The side effects of a batch's new messages: accounts, users, profiles, aliases.

Applied in batch order, in bulk where the order allows it (users created and
updated together, profile operations applied in Python then written once,
aliases linked in a few statements).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from sightline.model import (
    AccountChange,
    AliasChange,
    AttributeOp,
    AttributeType,
    Normalised,
)
from sightline.profile import Attribute, ProfileOpError, apply_ops
from sightline.store.schema import accounts, aliases, user_attributes, users
from sightline.store.sql import IN_CHUNK, cached_statement, dialect_insert

log = logging.getLogger(__name__)


class IdentityError(ValueError):
    """A message asks for an impossible identity change (an account its own ancestor)."""


class _UserEffects:
    """What a batch's messages change of one user, in batch order."""

    __slots__ = ("ops", "payment_ids", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}  # email, mobile, account_id: the last one wins
        self.payment_ids: dict[str, str] | None = None
        self.ops: list[AttributeOp] = []


class SideEffects:
    """A batch's user and account changes, applied in batch order with few statements.

    Accounts are written as each message comes (they are rare, and a cycle must fail
    at the message that makes it). User changes are gathered per user and written
    once per batch: the columns a later message sets win, payment ids merge in order,
    and profile operations apply in order on the stored attributes (read once), so
    the result is what applying each message on its own would leave. Users are
    created in the order the batch first names them, as one message at a time would.
    """

    def __init__(self, conn: sa.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.accounts: dict[tuple[str, str], int] = {}
        self.users: dict[tuple[str, str], _UserEffects] = {}
        self.links: list[tuple[str, AliasChange]] = []
        """The users' anonymous ids, linked before the messages' own aliases."""

    def account_id(self, product_id: str, external_id: str) -> int:
        key = (product_id, external_id)
        found = self.accounts.get(key)
        if found is None:
            found = ensure_account(self.conn, product_id, external_id, self.now)
            self.accounts[key] = found
        return found

    def apply(self, product_id: str, item: Normalised) -> None:
        for account in item.accounts:
            upsert_account(self.conn, product_id, account, self.now)
        for change in item.users:
            key = (product_id, change.external_id)
            user = self.users.get(key)
            if user is None:
                user = self.users[key] = _UserEffects()
            if change.email is not None:
                user.values["email"] = change.email
            if change.mobile is not None:
                user.values["mobile"] = change.mobile
            if change.account_external_id is not None:
                user.values["account_id"] = self.account_id(product_id, change.account_external_id)
            if change.payment_ids:
                user.payment_ids = {**(user.payment_ids or {}), **change.payment_ids}
            user.ops.extend(change.ops)
            if change.anonymous_id is not None:
                alias = AliasChange(
                    alias=change.anonymous_id, user_external_id=change.external_id, kind="anonymous"
                )
                self.links.append((product_id, alias))

    def flush(self, touched: set[tuple[str, str]]) -> None:
        """Write the gathered user changes; ``touched`` users get ``updated_at`` anyway."""
        if not self.users:
            return
        by_product: dict[str, list[str]] = {}
        for product_id, external_id in self.users:
            by_product.setdefault(product_id, []).append(external_id)
        ids: dict[tuple[str, str], int] = {}
        for product_id, external_ids in by_product.items():
            found = _ensure_users(self.conn, product_id, external_ids, self.now)
            ids.update(((product_id, e), i) for e, i in found.items())
        self._update_users(ids, touched)
        self._apply_ops(ids)

    def _update_users(self, ids: dict[tuple[str, str], int], touched: set[tuple[str, str]]) -> None:
        conn = self.conn
        wanting = [ids[key] for key, user in self.users.items() if user.payment_ids]
        payment_ids: dict[int, Any] = {}
        query = cached_statement(conn, "payment_ids", _payment_ids_query)
        for start in range(0, len(wanting), IN_CHUNK):
            chunk = {"ids": wanting[start : start + IN_CHUNK]}
            for user_id, value in conn.execute(query, chunk):
                payment_ids[user_id] = value
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for key, user in self.users.items():
            values = dict(user.values)
            user_id = ids[key]
            if user.payment_ids:
                values["payment_ids"] = {**(payment_ids.get(user_id) or {}), **user.payment_ids}
            if not values and key in touched:
                continue  # _touch_users sets its updated_at
            params = {f"_{name}": value for name, value in values.items()}
            params["_id"] = user_id
            params["_updated_at"] = self.now
            groups.setdefault(tuple(sorted(values)), []).append(params)
        for columns, rows in groups.items():
            conn.execute(
                cached_statement(conn, "update_users:" + ",".join(columns), _user_update(columns)),
                rows,
            )

    def _apply_ops(self, ids: dict[tuple[str, str], int]) -> None:
        conn = self.conn
        wanting = [(ids[key], user.ops) for key, user in self.users.items() if user.ops]
        if not wanting:
            return
        current: dict[int, dict[str, Attribute]] = {user_id: {} for user_id, _ in wanting}
        user_ids = list(current)
        query = cached_statement(conn, "attributes", _attributes_query)
        for start in range(0, len(user_ids), IN_CHUNK):
            for row in conn.execute(query, {"ids": user_ids[start : start + IN_CHUNK]}):
                current[row.user_id][row.name] = Attribute(AttributeType(row.type), row.value)
        removed: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for user_id, ops in wanting:
            attributes = current[user_id]
            changed: dict[str, Attribute | None] = {}
            for op in ops:
                try:
                    changed.update(apply_ops(attributes, (op,)))
                except ProfileOpError as exc:
                    # The op does not fit what is stored (increment a string): skip it, keep
                    # the rest. Failing would retry the whole batch forever for one client's
                    # data.
                    log.warning("skipped a profile operation of user %s: %s", user_id, exc)
            for name, attr in changed.items():
                if attr is None:
                    removed.append({"_user_id": user_id, "_name": name})
                else:
                    kept.append(
                        {
                            "user_id": user_id,
                            "name": name,
                            "type": attr.type.value,
                            "value": attr.value,
                            "updated_at": self.now,
                        }
                    )
        if removed:
            conn.execute(cached_statement(conn, "delete_attributes", _delete_attribute), removed)
        if kept:
            conn.execute(cached_statement(conn, "upsert_attributes", _upsert_attributes), kept)


def _payment_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(users.c.id, users.c.payment_ids).where(
        users.c.id.in_(sa.bindparam("ids", expanding=True))
    )


def _attributes_query(_conn: sa.Connection) -> Any:
    return sa.select(
        user_attributes.c.user_id,
        user_attributes.c.name,
        user_attributes.c.type,
        user_attributes.c.value,
    ).where(user_attributes.c.user_id.in_(sa.bindparam("ids", expanding=True)))


def _user_update(columns: tuple[str, ...]) -> Callable[[sa.Connection], Any]:
    def build(_conn: sa.Connection) -> Any:
        values = {
            name: sa.bindparam(f"_{name}", type_=users.c[name].type)
            for name in (*columns, "updated_at")
        }
        return (
            sa.update(users)
            .where(users.c.id == sa.bindparam("_id", type_=users.c.id.type))
            .values(values)
        )

    return build


def _delete_attribute(_conn: sa.Connection) -> Any:
    return sa.delete(user_attributes).where(
        user_attributes.c.user_id == sa.bindparam("_user_id", type_=user_attributes.c.user_id.type),
        user_attributes.c.name == sa.bindparam("_name", type_=user_attributes.c.name.type),
    )


def _upsert_attributes(conn: sa.Connection) -> Any:
    insert = dialect_insert(conn, user_attributes)
    return insert.on_conflict_do_update(
        index_elements=["user_id", "name"],
        set_={
            "type": insert.excluded.type,
            "value": insert.excluded.value,
            "updated_at": insert.excluded.updated_at,
        },
    )


def ensure_account(conn: sa.Connection, product_id: str, external_id: str, now: datetime) -> int:
    found = conn.execute(
        sa.select(accounts.c.id).where(
            accounts.c.product_id == product_id, accounts.c.external_id == external_id
        )
    ).scalar()
    if found is not None:
        return int(found)
    statement = (
        dialect_insert(conn, accounts)
        .values(
            product_id=product_id,
            external_id=external_id,
            traits={},
            payment_ids={},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["product_id", "external_id"])
    )
    conn.execute(statement)
    return ensure_account(conn, product_id, external_id, now)


def upsert_account(
    conn: sa.Connection, product_id: str, change: AccountChange, now: datetime
) -> int:
    account_id = ensure_account(conn, product_id, change.external_id, now)
    row = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
    values: dict[str, Any] = {"updated_at": now}
    if change.name is not None:
        values["name"] = change.name
    if change.traits:
        values["traits"] = {**(row.traits or {}), **change.traits}
    if change.payment_ids:
        values["payment_ids"] = {**(row.payment_ids or {}), **change.payment_ids}
    if change.parent_external_id is not None:
        if change.parent_external_id == change.external_id:
            raise IdentityError(f"account {change.external_id} cannot be its own parent")
        parent_id = ensure_account(conn, product_id, change.parent_external_id, now)
        if account_id in ancestors(conn, parent_id):
            raise IdentityError(
                f"making {change.parent_external_id} the parent of {change.external_id} "
                "would create a cycle"
            )
        values["parent_id"] = parent_id
    conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**values))
    return account_id


def ancestors(conn: sa.Connection, account_id: int) -> list[int]:
    """``account_id`` and its parents up to the root."""
    chain = [account_id]
    current: int | None = account_id
    while current is not None:
        current = conn.execute(
            sa.select(accounts.c.parent_id).where(accounts.c.id == current)
        ).scalar()
        if current is None or current in chain:
            break
        chain.append(int(current))
    return chain


def link_aliases(
    conn: sa.Connection, links: Sequence[tuple[str, AliasChange]], now: datetime
) -> None:
    """Link a batch's aliases in a few statements, not three per event.

    Segment-style messages carry both ids on every event after login, so the same
    anonymous id comes again and again: the existing links are read once and only
    new ones written. In batch order, the first link of an alias wins (as
    ``link_alias`` does), and a link never moves an alias to another user.
    """
    wanted: dict[str, dict[str, AliasChange]] = {}
    for product_id, change in links:
        if change.alias != change.user_external_id:
            wanted.setdefault(product_id, {}).setdefault(change.alias, change)
    query = cached_statement(conn, "existing_aliases", _existing_aliases_query)
    for product_id, changes in wanted.items():
        names = sorted(changes)
        existing: set[str] = set()
        for start in range(0, len(names), IN_CHUNK):
            params = {"product_id": product_id, "aliases": names[start : start + IN_CHUNK]}
            existing.update(conn.execute(query, params).scalars())
        todo = [changes[name] for name in names if name not in existing]
        if not todo:
            continue
        user_ids = _ensure_users(conn, product_id, sorted({c.user_external_id for c in todo}), now)
        conn.execute(
            cached_statement(conn, "insert_aliases", _insert_aliases_statement),
            [
                {
                    "product_id": product_id,
                    "alias": c.alias,
                    "kind": c.kind,
                    "user_id": user_ids[c.user_external_id],
                    "created_at": now,
                }
                for c in todo
            ],
        )


def _existing_aliases_query(_conn: sa.Connection) -> Any:
    return sa.select(aliases.c.alias).where(
        aliases.c.product_id == sa.bindparam("product_id"),
        aliases.c.alias.in_(sa.bindparam("aliases", expanding=True)),
    )


def _insert_aliases_statement(conn: sa.Connection) -> Any:
    return dialect_insert(conn, aliases).on_conflict_do_nothing(
        index_elements=["product_id", "alias"]
    )


def _ensure_users(
    conn: sa.Connection, product_id: str, external_ids: Iterable[str], now: datetime
) -> dict[str, int]:
    """Ids of these users, creating the missing ones (bulk) in the order given."""
    ordered = list(dict.fromkeys(external_ids))
    found = _user_ids(conn, product_id, ordered)
    missing = [external_id for external_id in ordered if external_id not in found]
    if missing:
        conn.execute(
            cached_statement(conn, "ensure_users", _ensure_users_statement),
            [
                {
                    "product_id": product_id,
                    "external_id": external_id,
                    "payment_ids": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for external_id in missing
            ],
        )
        found.update(_user_ids(conn, product_id, missing))
    return found


def _ensure_users_statement(conn: sa.Connection) -> Any:
    return dialect_insert(conn, users).on_conflict_do_nothing(
        index_elements=["product_id", "external_id"]
    )


def _user_ids(conn: sa.Connection, product_id: str, external_ids: list[str]) -> dict[str, int]:
    query = cached_statement(conn, "user_ids", _user_ids_query)
    found: dict[str, int] = {}
    for start in range(0, len(external_ids), IN_CHUNK):
        params = {"product_id": product_id, "external_ids": external_ids[start : start + IN_CHUNK]}
        for row in conn.execute(query, params):
            found[row.external_id] = int(row.id)
    return found


def _user_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(users.c.external_id, users.c.id).where(
        users.c.product_id == sa.bindparam("product_id"),
        users.c.external_id.in_(sa.bindparam("external_ids", expanding=True)),
    )
