"""The side effects of a batch's new messages: accounts, users, profiles, aliases.

Applied in batch order, in bulk where the order allows it (users created and
updated together, profile operations applied in Python then written once,
aliases linked in a few statements).

**The write-key policy.** A message's :class:`~sightline.model.Authority` (the worker
sets it from the envelope's key and the product's ``client_identity``) decides what it
may change. A server key changes everything, and what it creates or changes becomes
server-owned (``users.server_owned``, ``accounts.server_owned``,
``user_attributes.server_set``). A write key of a ``restricted`` product (the default)
may create users and accounts, set profile attributes a server key did not set, link a
user a server key does not own to an account, and name and describe accounts a server
key does not own; it may never set e-mail, mobile or payment ids, nor an account's
parent, nor make a server-owned user's id an alias of someone. What it may not do is
dropped, the message's events are stored all the same, and each refused change is
counted (``SideEffects.refused``; the worker's ``refused_changes`` counter). The
checks read the ownership flags in the same few statements that already read the
rows (the account row, the stored attributes, the users' payment ids), so the policy
adds at most one query per batch (the users behind a write key's account links, or
the aliases a write key links).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sightline.model import (
    AccountChange,
    AliasChange,
    AttributeOp,
    AttributeType,
    Authority,
    Normalised,
)
from sightline.profile import Attribute, ProfileOpError, apply_ops
from sightline.store.schema import accounts, aliases, user_attributes, users
from sightline.store.sql import (
    IN_CHUNK,
    bulk_insert,
    bulk_update,
    cached_statement,
    dialect_insert,
    execute_rows,
)

log = logging.getLogger(__name__)


class IdentityError(ValueError):
    """A message asks for an impossible identity change (an account its own ancestor)."""


class _UserEffects:
    """What a batch's messages change of one user, in batch order."""

    __slots__ = ("client_account", "ops", "payment_ids", "server", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}  # email, mobile, account_id: the last one wins
        self.payment_ids: dict[str, str] | None = None
        self.ops: list[tuple[AttributeOp, Authority]] = []
        self.server = False
        """A server key's message changed the user in this batch: it becomes server-owned."""
        self.client_account = False
        """``values["account_id"]`` is a restricted write key's: dropped at the flush when
        the stored user is server-owned."""


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
        self.refused = 0
        """Changes the write-key policy refused (a field, an attribute operation, an alias)."""
        self._client_links: set[tuple[str, str, str]] = set()
        self._server_links: set[tuple[str, str, str]] = set()

    def account_id(self, product_id: str, external_id: str, by_server: bool = False) -> int:
        key = (product_id, external_id)
        found = self.accounts.get(key)
        if found is None:
            found = ensure_account(self.conn, product_id, external_id, self.now, by_server)
            self.accounts[key] = found
        return found

    def restricted_links(self) -> set[tuple[str, str, str]]:
        """(product, alias, user) links only restricted write keys asked for this batch."""
        return self._client_links - self._server_links

    def _note_link(self, product_id: str, alias: AliasChange, by: Authority) -> None:
        seen = self._client_links if by is Authority.CLIENT else self._server_links
        seen.add((product_id, alias.alias, alias.user_external_id))

    def apply(self, product_id: str, item: Normalised) -> None:
        by = item.authority
        restricted = by is Authority.CLIENT
        for account in item.accounts:
            self.refused += upsert_account(self.conn, product_id, account, self.now, by)
        for alias in item.aliases:
            self._note_link(product_id, alias, by)
        for change in item.users:
            key = (product_id, change.external_id)
            user = self.users.get(key)
            if user is None:
                user = self.users[key] = _UserEffects()
            if restricted:
                # E-mail, mobile and payment ids are server-only (they identify a person
                # and merge channels): refused whoever owns the user.
                self.refused += (change.email is not None) + (change.mobile is not None)
                self.refused += bool(change.payment_ids)
            else:
                if change.email is not None:
                    user.values["email"] = change.email
                if change.mobile is not None:
                    user.values["mobile"] = change.mobile
                if change.payment_ids:
                    user.payment_ids = {**(user.payment_ids or {}), **change.payment_ids}
            if change.account_external_id is not None:
                if restricted and user.server:
                    self.refused += 1  # a server key's message of this batch owns the user
                else:
                    user.values["account_id"] = self.account_id(
                        product_id, change.account_external_id, by is Authority.SERVER
                    )
                    user.client_account = restricted
            if by is Authority.SERVER:
                user.server = True
            user.ops.extend((op, by) for op in change.ops)
            if change.anonymous_id is not None:
                alias = AliasChange(
                    alias=change.anonymous_id, user_external_id=change.external_id, kind="anonymous"
                )
                self.links.append((product_id, alias))
                self._note_link(product_id, alias, by)

    def flush(self, touched: set[tuple[str, str]]) -> list[Callable[[], object]]:
        """Read what the gathered user changes need and return their writes, in order,
        for the caller to run (their results are not read: PostgreSQL's writer sends
        them in one pipeline, ``sql.pipelined``); ``touched`` users get ``updated_at``
        anyway."""
        if not self.users:
            return []
        by_product: dict[str, list[str]] = {}
        for product_id, external_id in self.users:
            by_product.setdefault(product_id, []).append(external_id)
        ids: dict[tuple[str, str], int] = {}
        for product_id, external_ids in by_product.items():
            found = _ensure_users(self.conn, product_id, external_ids, self.now)
            ids.update(((product_id, e), i) for e, i in found.items())
        return self._update_users(ids, touched) + self._apply_ops(ids)

    def _update_users(
        self, ids: dict[tuple[str, str], int], touched: set[tuple[str, str]]
    ) -> list[Callable[[], object]]:
        conn = self.conn
        # One read for the payment ids to merge and the ownership a write key's account
        # link depends on.
        wanting = [
            ids[key] for key, user in self.users.items() if user.payment_ids or user.client_account
        ]
        payment_ids: dict[int, Any] = {}
        owned: set[int] = set()
        query = cached_statement(conn, "payment_ids", _payment_ids_query)
        for start in range(0, len(wanting), IN_CHUNK):
            chunk = {"ids": wanting[start : start + IN_CHUNK]}
            for user_id, value, server_owned in conn.execute(query, chunk):
                payment_ids[user_id] = value
                if server_owned:
                    owned.add(user_id)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        changed: list[dict[str, Any]] = []
        for key, user in self.users.items():
            values = dict(user.values)
            user_id = ids[key]
            if user.client_account and user_id in owned:
                del values["account_id"]  # a server key owns the user: its account is theirs
                self.refused += 1
            if user.server:
                values["server_owned"] = True
            if user.payment_ids:
                values["payment_ids"] = {**(payment_ids.get(user_id) or {}), **user.payment_ids}
            if not values and key in touched:
                continue  # _touch_users sets its updated_at
            if conn.dialect.name == "postgresql":
                # A column this user keeps is NULL (payment ids: SQL NULL, not JSON null).
                changed.append(
                    {**_KEEP_USER_COLUMNS, **values, "id": user_id, "updated_at": self.now}
                )
                continue
            params = {f"_{name}": value for name, value in values.items()}
            params["_id"] = user_id
            params["_updated_at"] = self.now
            groups.setdefault(tuple(sorted(values)), []).append(params)
        writes: list[Callable[[], object]] = []
        if changed:
            # PostgreSQL: one statement for every user, whatever columns each changes (a
            # column a user does not change is NULL: kept); in id order, a stable lock
            # order between workers.
            changed.sort(key=lambda row: int(row["id"]))
            statement = cached_statement(conn, "update_users_pg", _update_users_pg)
            columns = ("id", *_USER_UPDATE_COLUMNS)
            writes.append(partial(execute_rows, conn, statement, columns, changed))
        for names, rows in groups.items():
            statement = cached_statement(
                conn, "update_users:" + ",".join(names), _user_update(names)
            )
            writes.append(partial(conn.execute, statement, rows))
        return writes

    def _apply_ops(self, ids: dict[tuple[str, str], int]) -> list[Callable[[], object]]:
        conn = self.conn
        wanting = [(ids[key], user.ops) for key, user in self.users.items() if user.ops]
        if not wanting:
            return []
        current: dict[int, dict[str, Attribute]] = {user_id: {} for user_id, _ in wanting}
        server_set: dict[int, set[str]] = {user_id: set() for user_id in current}
        user_ids = list(current)
        query = cached_statement(conn, "attributes", _attributes_query)
        for start in range(0, len(user_ids), IN_CHUNK):
            for row in conn.execute(query, {"ids": user_ids[start : start + IN_CHUNK]}):
                current[row.user_id][row.name] = Attribute(AttributeType(row.type), row.value)
                if row.server_set:
                    server_set[row.user_id].add(row.name)
        removed: list[dict[str, Any]] = []
        kept: list[tuple[int, str, str, Any, bool]] = []
        for user_id, ops in wanting:
            attributes = current[user_id]
            by_server = server_set[user_id]
            stored, stored_server = dict(attributes), set(by_server)
            changed: dict[str, Attribute | None] = {}
            for op, by in ops:
                if by is Authority.CLIENT and op.name in by_server:
                    self.refused += 1  # a server key set it: a write key cannot change it
                    continue
                try:
                    done = apply_ops(attributes, (op,))
                except ProfileOpError as exc:
                    # The op does not fit what is stored (increment a string): skip it, keep
                    # the rest. Failing would retry the whole batch forever for one client's
                    # data.
                    log.warning("skipped a profile operation of user %s: %s", user_id, exc)
                    continue
                changed.update(done)
                for name, attr in done.items():
                    # The flag says who set it last; a removed attribute takes it along.
                    if by is Authority.SERVER and attr is not None:
                        by_server.add(name)
                    else:
                        by_server.discard(name)
            for name, attr in changed.items():
                before = stored.get(name)
                if attr is None:
                    if before is not None:
                        removed.append({"_user_id": user_id, "_name": name})
                elif not _same(before, attr) or (name in stored_server) != (name in by_server):
                    # What this transaction read is stored already: nothing to write (a
                    # profile that sends the same traits again writes no row version).
                    kept.append((user_id, name, attr.type.value, attr.value, name in by_server))
        writes: list[Callable[[], object]] = []
        if removed:
            statement = cached_statement(conn, "delete_attributes", _delete_attribute)
            writes.append(partial(conn.execute, statement, removed))
        if kept:
            writes.append(partial(_write_attributes, conn, kept, self.now))
        return writes


def _same(before: Attribute | None, after: Attribute) -> bool:
    """The stored attribute is ``after`` exactly (same type, same JSON text: ``1`` is not
    ``1.0``, and a dict whose keys come back in another order counts as changed)."""
    return (
        before is not None
        and before.type == after.type
        and _json.encode(before.value) == _json.encode(after.value)
    )


_json = msgspec.json.Encoder()


def _write_attributes(
    conn: sa.Connection, kept: list[tuple[int, str, str, Any, bool]], now: datetime
) -> None:
    """Upsert the attributes (no two share a user and name) in one statement."""
    execute_rows(
        conn,
        cached_statement(conn, "upsert_attributes", _upsert_attributes),
        _ATTRIBUTE_COLUMNS,
        [
            {
                "user_id": user_id,
                "name": name,
                "type": kind,
                "value": value,
                "updated_at": now,
                "server_set": flag,
            }
            for user_id, name, kind, value, flag in kept
        ],
    )


_ATTRIBUTE_COLUMNS = ("user_id", "name", "type", "value", "updated_at", "server_set")


def _payment_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(users.c.id, users.c.payment_ids, users.c.server_owned).where(
        users.c.id.in_(sa.bindparam("ids", expanding=True))
    )


def _attributes_query(_conn: sa.Connection) -> Any:
    return sa.select(
        user_attributes.c.user_id,
        user_attributes.c.name,
        user_attributes.c.type,
        user_attributes.c.value,
        user_attributes.c.server_set,
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


_USER_UPDATE_COLUMNS = (
    "email",
    "mobile",
    "account_id",
    "payment_ids",
    "server_owned",
    "updated_at",
)


_KEEP_USER_COLUMNS: dict[str, Any] = {
    "email": None,
    "mobile": None,
    "account_id": None,
    "payment_ids": sa.null(),
    "server_owned": None,
}


def _update_users_pg(_conn: sa.Connection) -> Any:
    return bulk_update(users, "id", _USER_UPDATE_COLUMNS)


def _delete_attribute(_conn: sa.Connection) -> Any:
    return sa.delete(user_attributes).where(
        user_attributes.c.user_id == sa.bindparam("_user_id", type_=user_attributes.c.user_id.type),
        user_attributes.c.name == sa.bindparam("_name", type_=user_attributes.c.name.type),
    )


def _upsert_attributes(conn: sa.Connection) -> Any:
    # One statement on PostgreSQL too (arrays; the values as JSON text: sql.bulk_insert).
    insert = bulk_insert(conn, user_attributes, _ATTRIBUTE_COLUMNS)
    return insert.on_conflict_do_update(
        index_elements=["user_id", "name"],
        set_={
            "type": insert.excluded.type,
            "value": insert.excluded.value,
            "updated_at": insert.excluded.updated_at,
            "server_set": insert.excluded.server_set,
        },
    )


def ensure_account(
    conn: sa.Connection, product_id: str, external_id: str, now: datetime, by_server: bool = False
) -> int:
    """The account's id, creating it (server-owned when ``by_server``) if it is new."""
    return int(_account_row(conn, product_id, external_id, now, by_server).id)


def _account_row(
    conn: sa.Connection, product_id: str, external_id: str, now: datetime, by_server: bool
) -> sa.Row[Any]:
    """The account's row, creating it first if it is new. PostgreSQL: one statement (a
    row another transaction inserted meanwhile is not seen by its snapshot: read again)."""
    params = {"product_id": product_id, "external_id": external_id}
    if conn.dialect.name == "postgresql":
        statement = cached_statement(conn, "ensure_account_pg", _ensure_account_pg)
        found = conn.execute(statement, {**params, "now": now, "server_owned": by_server}).first()
        if found is not None:
            return found
    else:
        found = conn.execute(cached_statement(conn, "account_row", _account_query), params).first()
        if found is not None:
            return found
        statement = cached_statement(conn, "insert_account", _insert_account)
        conn.execute(statement, {**params, "now": now, "server_owned": by_server})
    return conn.execute(cached_statement(conn, "account_row", _account_query), params).one()


def _account_query(_conn: sa.Connection) -> Any:
    return sa.select(accounts).where(
        accounts.c.product_id == sa.bindparam("product_id"),
        accounts.c.external_id == sa.bindparam("external_id"),
    )


def _insert_account(conn: sa.Connection) -> Any:
    now = sa.bindparam("now", type_=accounts.c.created_at.type)
    return (
        dialect_insert(conn, accounts)
        .values(
            product_id=sa.bindparam("product_id"),
            external_id=sa.bindparam("external_id"),
            traits={},
            payment_ids={},
            created_at=now,
            updated_at=now,
            server_owned=sa.bindparam("server_owned", type_=sa.Boolean()),
        )
        .on_conflict_do_nothing(index_elements=["product_id", "external_id"])
    )


def _ensure_account_pg(conn: sa.Connection) -> Any:
    new = _insert_account(conn).returning(*accounts.c).cte("new_account")
    return sa.union_all(sa.select(new), _account_query(conn))


def upsert_account(
    conn: sa.Connection,
    product_id: str,
    change: AccountChange,
    now: datetime,
    by: Authority = Authority.SERVER,
) -> int:
    """Create or change the account as ``by`` may (module doc); how many of the changes
    the write-key policy refused."""
    by_server = by is Authority.SERVER
    row = _account_row(conn, product_id, change.external_id, now, by_server)
    account_id = int(row.id)
    name, traits, payment_ids = change.name, change.traits, change.payment_ids
    parent = change.parent_external_id
    refused = 0
    if by is Authority.CLIENT:
        if row.server_owned:  # a server key's account: a write key changes nothing of it
            refused += (name is not None) + bool(traits)
            name, traits = None, None
        # Parents (what an account's tree, and so its events, are) and payment ids are
        # server-only.
        refused += bool(payment_ids) + (parent is not None)
        payment_ids, parent = None, None
    values: dict[str, Any] = {"updated_at": now}
    if by_server and not row.server_owned:
        values["server_owned"] = True
    if name is not None:
        values["name"] = name
    if traits:
        values["traits"] = {**(row.traits or {}), **traits}
    if payment_ids:
        values["payment_ids"] = {**(row.payment_ids or {}), **payment_ids}
    if parent is not None:
        if parent == change.external_id:
            raise IdentityError(f"account {change.external_id} cannot be its own parent")
        parent_id = ensure_account(conn, product_id, parent, now, by_server)
        if account_id in ancestors(conn, parent_id):
            raise IdentityError(
                f"making {parent} the parent of {change.external_id} would create a cycle"
            )
        values["parent_id"] = parent_id
    conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**values))
    return refused


def ancestors(conn: sa.Connection, account_id: int) -> list[int]:
    """``account_id`` and its parents up to the root: one query (a recursive common
    table expression; ``UNION`` stops at a cycle)."""
    statement = cached_statement(conn, "account_chain", _account_chain)
    parents = {int(i): p for i, p in conn.execute(statement, {"id": account_id})}
    chain = [account_id]
    current = parents.get(account_id)
    while current is not None and current not in chain:
        chain.append(int(current))
        current = parents.get(current)
    return chain


def _account_chain(_conn: sa.Connection) -> Any:
    a = accounts.c
    chain = (
        sa.select(a.id, a.parent_id)
        .where(a.id == sa.bindparam("id", type_=a.id.type))
        .cte("chain", recursive=True)
    )
    parent = accounts.alias("parent")
    chain = chain.union(
        sa.select(parent.c.id, parent.c.parent_id).join(chain, parent.c.id == chain.c.parent_id)
    )
    return sa.select(chain.c.id, chain.c.parent_id)


def link_aliases(
    conn: sa.Connection,
    links: Sequence[tuple[str, AliasChange]],
    now: datetime,
    restricted: Collection[tuple[str, str, str]] = frozenset(),
) -> int:
    """Link a batch's aliases in a few statements, not three per event.

    Segment-style messages carry both ids on every event after login, so the same
    anonymous id comes again and again: the existing links are read once and only
    new ones written. In batch order, the first link of an alias wins (as
    ``link_alias`` does), and a link never moves an alias to another user.

    ``restricted``: the (product, alias, user) links only restricted write keys asked
    for: one whose alias is a server-owned user's id is refused (it would make that
    person's events, and their erasure, someone else's). Returns how many were refused.
    """
    refused = 0
    wanted: dict[str, dict[str, AliasChange]] = {}
    for product_id, change in links:
        if change.alias != change.user_external_id:
            wanted.setdefault(product_id, {}).setdefault(change.alias, change)
    if conn.dialect.name == "postgresql":
        for product_id, changes in wanted.items():
            refused += _link_aliases_pg(conn, product_id, changes, now, restricted)
        return refused
    query = cached_statement(conn, "existing_aliases", _existing_aliases_query)
    for product_id, changes in wanted.items():
        names = sorted(changes)
        existing: set[str] = set()
        for start in range(0, len(names), IN_CHUNK):
            params = {"product_id": product_id, "aliases": names[start : start + IN_CHUNK]}
            existing.update(conn.execute(query, params).scalars())
        todo = [changes[name] for name in names if name not in existing]
        if restricted:
            asked = [
                c.alias for c in todo if (product_id, c.alias, c.user_external_id) in restricted
            ]
            owned = _server_owned(conn, product_id, asked)
            refused += sum(c.alias in owned for c in todo)
            todo = [c for c in todo if c.alias not in owned]
        if not todo:
            continue
        user_ids = _ensure_users(conn, product_id, sorted({c.user_external_id for c in todo}), now)
        _insert_links(conn, product_id, todo, user_ids, now)
    return refused


def _insert_links(
    conn: sa.Connection,
    product_id: str,
    changes: Sequence[AliasChange],
    user_ids: dict[str, int],
    now: datetime,
) -> None:
    """Link each alias of ``changes`` to its user (``user_ids``: by external id)."""
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
            for c in changes
        ],
    )


def _link_aliases_pg(
    conn: sa.Connection,
    product_id: str,
    changes: dict[str, AliasChange],
    now: datetime,
    restricted: Collection[tuple[str, str, str]],
) -> int:
    """PostgreSQL: :func:`link_aliases` of one product in one statement (one round trip
    instead of four: the existing links, the server-owned users, the users' ids, the
    insert), the same reads and writes in the same order (aliases and users by their
    ids, sorted: a stable lock order). An alias whose user another transaction inserted
    meanwhile finds no id in the statement's snapshot (as in :func:`_ensure_users_pg`):
    it is linked again by the statements that read the committed users. How many links
    were refused."""
    names = sorted(changes)
    todo = [changes[name] for name in names]
    params = {
        "product_id": product_id,
        "aliases": names,
        "kinds": [c.kind for c in todo],
        "external_ids": [c.user_external_id for c in todo],
        "restricted": [(product_id, c.alias, c.user_external_id) in restricted for c in todo],
        "people": sorted({c.user_external_id for c in todo}),
        "now": now,
    }
    statement = cached_statement(conn, "link_aliases_pg", _link_aliases_pg_statement)
    refused = 0
    unlinked: list[AliasChange] = []
    for alias, was_refused in conn.execute(statement, params):
        if was_refused:
            refused += 1
        else:
            unlinked.append(changes[alias])
    if unlinked:
        user_ids = _user_ids(conn, product_id, sorted({c.user_external_id for c in unlinked}))
        _insert_links(conn, product_id, sorted(unlinked, key=lambda c: c.alias), user_ids, now)
    return refused


def _link_aliases_pg_statement(_conn: sa.Connection) -> Any:
    # The links asked for (in alias order), those whose alias is not linked yet, those a
    # restricted write key may not make (the alias is a server-owned user's id), the
    # users of the rest created if missing (in id order) and read, the links inserted.
    # Returned: the refused aliases, and the kept ones whose user had no id here.
    return sa.text(
        "WITH wanted AS (SELECT w.alias, w.kind, w.external_id, w.restricted, w.n "
        "FROM unnest(:aliases, :kinds, :external_ids, :restricted) WITH ORDINALITY "
        "AS w (alias, kind, external_id, restricted, n)), "
        "todo AS (SELECT w.* FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM aliases a "
        "WHERE a.product_id = :product_id AND a.alias = w.alias)), "
        "refused AS (SELECT t.alias FROM todo t WHERE t.restricted AND EXISTS (SELECT 1 "
        "FROM users u WHERE u.product_id = :product_id AND u.external_id = t.alias "
        "AND u.server_owned)), "
        "kept AS (SELECT t.* FROM todo t WHERE NOT EXISTS (SELECT 1 FROM refused r "
        "WHERE r.alias = t.alias)), "
        "people AS (SELECT p.external_id, p.n FROM unnest(:people) WITH ORDINALITY "
        "AS p (external_id, n) WHERE p.external_id IN (SELECT k.external_id FROM kept k)), "
        "new_users AS (INSERT INTO users (product_id, external_id, payment_ids, created_at, "
        "updated_at) SELECT :product_id, p.external_id, '{}', :now, :now FROM people p "
        "WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.product_id = :product_id "
        "AND u.external_id = p.external_id) ORDER BY p.n "
        "ON CONFLICT (product_id, external_id) DO NOTHING RETURNING external_id, id), "
        "ids AS (SELECT external_id, id FROM new_users UNION ALL SELECT u.external_id, u.id "
        "FROM users u JOIN people p ON u.product_id = :product_id "
        "AND u.external_id = p.external_id), "
        "linked AS (INSERT INTO aliases (product_id, alias, kind, user_id, created_at) "
        "SELECT :product_id, k.alias, k.kind, i.id, :now FROM kept k "
        "JOIN ids i ON i.external_id = k.external_id ORDER BY k.n "
        "ON CONFLICT (product_id, alias) DO NOTHING) "
        "SELECT k.alias, false FROM kept k WHERE NOT EXISTS (SELECT 1 FROM ids i "
        "WHERE i.external_id = k.external_id) "
        "UNION ALL SELECT r.alias, true FROM refused r"
    ).bindparams(
        sa.bindparam("aliases", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("kinds", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("external_ids", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("restricted", type_=postgresql.ARRAY(sa.Boolean())),
        sa.bindparam("people", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("product_id", type_=sa.Text()),
        sa.bindparam("now", type_=users.c.created_at.type),
    )


def _server_owned(conn: sa.Connection, product_id: str, external_ids: list[str]) -> set[str]:
    """Which of these ids are server-owned users' (one query per chunk; none for none)."""
    query = cached_statement(conn, "server_owned_users", _server_owned_query)
    found: set[str] = set()
    for start in range(0, len(external_ids), IN_CHUNK):
        params = {"product_id": product_id, "external_ids": external_ids[start : start + IN_CHUNK]}
        found.update(conn.execute(query, params).scalars())
    return found


def _server_owned_query(_conn: sa.Connection) -> Any:
    return sa.select(users.c.external_id).where(
        users.c.product_id == sa.bindparam("product_id"),
        users.c.external_id.in_(sa.bindparam("external_ids", expanding=True)),
        users.c.server_owned,
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
    if conn.dialect.name == "postgresql":
        return _ensure_users_pg(conn, product_id, ordered, now)
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


def _ensure_users_pg(
    conn: sa.Connection, product_id: str, ordered: list[str], now: datetime
) -> dict[str, int]:
    """PostgreSQL: one round trip for the ids of existing and new users alike (the
    missing ones inserted in the order given). A user another transaction inserted
    meanwhile is neither inserted (``ON CONFLICT DO NOTHING`` waits for it) nor seen by
    this statement's snapshot: read again, as the other databases do."""
    query = cached_statement(conn, "ensure_users_pg", _ensure_users_pg_statement)
    found: dict[str, int] = {}
    params = {"product_id": product_id, "external_ids": ordered, "now": now}
    for external_id, user_id in conn.execute(query, params):
        found[external_id] = int(user_id)
    if len(found) < len(ordered):
        found.update(_user_ids(conn, product_id, [e for e in ordered if e not in found]))
    return found


def _ensure_users_pg_statement(_conn: sa.Connection) -> Any:
    # text[], not varchar(255)[]: a too long id fails the INSERT (DataError) instead of
    # being cut.
    return sa.text(
        "WITH wanted AS (SELECT w.external_id, w.n FROM unnest(:external_ids) "
        "WITH ORDINALITY AS w (external_id, n)), "
        "new AS (INSERT INTO users (product_id, external_id, payment_ids, created_at, "
        "updated_at) SELECT :product_id, w.external_id, '{}', :now, :now FROM wanted w "
        "WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.product_id = :product_id "
        "AND u.external_id = w.external_id) ORDER BY w.n "
        "ON CONFLICT (product_id, external_id) DO NOTHING RETURNING external_id, id) "
        "SELECT external_id, id FROM new UNION ALL SELECT u.external_id, u.id FROM users u "
        "JOIN wanted w ON u.product_id = :product_id AND u.external_id = w.external_id"
    ).bindparams(
        sa.bindparam("external_ids", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("product_id", type_=sa.Text()),
        sa.bindparam("now", type_=users.c.created_at.type),
    )


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
