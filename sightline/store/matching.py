"""Resolving who a message is about before it is written.

Some dialects name users indirectly (Pyze's ``pyze_id``, Gameball's channel
merging by e-mail or mobile), and events without an account belong to their
user's account. Both are read-only lookups done before the batch is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.model import (
    AliasChange,
    Normalised,
    UserChange,
)
from sightline.store.columns import EventColumns
from sightline.store.schema import accounts, aliases, users
from sightline.store.sql import IN_CHUNK, cached_statement


class _Pending:
    """Aliases and channels that earlier messages of this batch are about to write."""

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], str] = {}
        self.emails: dict[tuple[str, str], str] = {}
        self.mobiles: dict[tuple[str, str], str] = {}

    def note(self, product_id: str, item: Normalised) -> None:
        for alias in item.aliases:
            self.aliases.setdefault((product_id, alias.alias), alias.user_external_id)
        for user in item.users:
            if user.email:
                self.emails.setdefault((product_id, user.email), user.external_id)
            if user.mobile:
                self.mobiles.setdefault((product_id, user.mobile), user.external_id)


def resolve_identities(conn: sa.Connection, items: Sequence[Normalised]) -> list[Normalised]:
    """Point messages that name a user indirectly at the user they mean.

    Only user changes that ask for it (``match_alias``: Pyze's ``pyze_id``;
    ``match_channels``: Gameball's channel merging) are looked up, so other
    dialects pay nothing. The lookup reads the store and what earlier messages of
    this batch are about to write; it writes nothing, so a replayed message
    resolves to the same user (the alias written the first time is found first).
    """
    pending = _Pending()
    resolved: list[Normalised] = []
    for item in items:
        product_id = item.events[0].product_id
        renames: dict[str, str] = {}
        for change in item.users:
            if change.match_alias or change.match_channels:
                target = _existing_user_for(conn, product_id, change, pending)
                if target is not None and target != change.external_id:
                    renames[change.external_id] = target
        if renames:
            item = _renamed(item, renames)
        pending.note(product_id, item)
        resolved.append(item)
    return resolved


def _existing_user_for(
    conn: sa.Connection, product_id: str, change: UserChange, pending: _Pending
) -> str | None:
    external_id = change.external_id
    if _user_exists(conn, product_id, external_id):
        return external_id
    aliased = (
        pending.aliases.get((product_id, external_id))
        or conn.execute(
            sa.select(users.c.external_id)
            .join(aliases, aliases.c.user_id == users.c.id)
            .where(aliases.c.product_id == product_id, aliases.c.alias == external_id)
        ).scalar()
    )
    if aliased is not None or not change.match_channels:
        return aliased
    for column, value, seen in (
        (users.c.email, change.email, pending.emails),
        (users.c.mobile, change.mobile, pending.mobiles),
    ):
        if not value:
            continue
        found = (
            seen.get((product_id, value))
            or conn.execute(
                sa.select(users.c.external_id)
                .where(users.c.product_id == product_id, column == value)
                .order_by(users.c.id)
                .limit(1)
            ).scalar()
        )
        if found is not None:
            return str(found)
    return None


def _user_exists(conn: sa.Connection, product_id: str, external_id: str) -> bool:
    found = conn.execute(
        sa.select(users.c.id).where(
            users.c.product_id == product_id, users.c.external_id == external_id
        )
    ).scalar()
    return found is not None


def _renamed(item: Normalised, renames: dict[str, str]) -> Normalised:
    """``item`` with its users renamed; each old id becomes an alias of the user it joined."""
    replace = msgspec.structs.replace
    return replace(
        item,
        events=tuple(
            replace(e, user_id=renames[e.user_id]) if e.user_id in renames else e
            for e in item.events
        ),
        users=tuple(
            replace(u, external_id=renames[u.external_id]) if u.external_id in renames else u
            for u in item.users
        ),
        aliases=tuple(
            replace(a, user_external_id=renames[a.user_external_id])
            if a.user_external_id in renames
            else a
            for a in item.aliases
        )
        + tuple(
            AliasChange(alias=old, user_external_id=new, kind="merged")
            for old, new in renames.items()
        ),
    )


def inherit_accounts(conn: sa.Connection, rows: EventColumns) -> None:
    """An event that names a user but no account belongs to the user's account.

    This is the architecture's "user -> account" resolution: Pyze and Gameball
    events carry no account, yet the user they name belongs to one (set by a
    Fuzy user, a Segment group call ...). Resolved when the event is written, so
    it is the account the user belonged to at that moment.
    """
    product_ids, user_ids, account_ids = rows["product_id"], rows["user_id"], rows["account_id"]
    wanted: dict[str, set[str]] = {}
    for product_id, user_id, account_id in zip(product_ids, user_ids, account_ids, strict=True):
        if user_id is not None and account_id is None:
            wanted.setdefault(product_id, set()).add(user_id)
    found: dict[tuple[str, str], str] = {}
    query = cached_statement(conn, "user_accounts", _user_accounts_query)
    for product_id, external_ids in wanted.items():
        ids = sorted(external_ids)
        for start in range(0, len(ids), IN_CHUNK):
            params = {"product_id": product_id, "external_ids": ids[start : start + IN_CHUNK]}
            for r in conn.execute(query, params):
                found[(product_id, r.external_id)] = r.account
    if found:
        for i, (product_id, user_id, account_id) in enumerate(
            zip(product_ids, user_ids, account_ids, strict=True)
        ):
            if account_id is None and user_id is not None:
                account_ids[i] = found.get((product_id, user_id))


def _user_accounts_query(_conn: sa.Connection) -> Any:
    return (
        sa.select(users.c.external_id, accounts.c.external_id.label("account"))
        .join(accounts, accounts.c.id == users.c.account_id)
        .where(
            users.c.product_id == sa.bindparam("product_id"),
            users.c.external_id.in_(sa.bindparam("external_ids", expanding=True)),
        )
    )
