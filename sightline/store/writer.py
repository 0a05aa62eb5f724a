"""Writing a normalised batch in one transaction, idempotent on (product, message id).

Events go first with ``ON CONFLICT DO NOTHING RETURNING``: only the events that
were really new apply their side effects (user stats, profile operations,
accounts, aliases), so a job that runs twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sightline.model import AccountChange, AliasChange, AttributeType, Normalised, UserChange
from sightline.profile import Attribute, ProfileOpError, apply_ops
from sightline.store.schema import accounts, aliases, dead_letters, events, user_attributes, users

log = logging.getLogger(__name__)


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

    def add(self, other: WriteResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.bots_dropped += other.bots_dropped


class IdentityError(ValueError):
    """A message asks for an impossible identity change (an account its own ancestor)."""


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def _greatest(conn: sa.Connection, a: Any, b: Any) -> Any:
    return sa.func.greatest(a, b) if conn.dialect.name == "postgresql" else sa.func.max(a, b)


def _least(conn: sa.Connection, a: Any, b: Any) -> Any:
    return sa.func.least(a, b) if conn.dialect.name == "postgresql" else sa.func.min(a, b)


def write_batch(
    conn: sa.Connection, items: Sequence[Normalised], dead: Sequence[DeadLetter] = ()
) -> WriteResult:
    """Write everything in the caller's transaction."""
    now = datetime.now(UTC)
    result = WriteResult(dead_letters=len(dead))
    write_dead_letters(conn, dead, now)
    items = _resolve_identities(conn, items)
    rows, owners = _event_rows(items)
    _inherit_accounts(conn, rows)
    new_keys = _insert_events(conn, rows)
    result.stored = len(new_keys)
    result.duplicates = sum(len(n.events) for n in items) - result.stored
    links: list[tuple[str, AliasChange]] = []
    for item in items:
        # A message's side effects apply once: when its first event is stored for the
        # first time. Profile-only messages carry an identify/group event for this.
        first = item.events[0]
        key = (first.product_id, first.message_id)
        if key in new_keys and owners[key] is item:
            _apply_side_effects(conn, first.product_id, item, now)
            links.extend((first.product_id, alias) for alias in item.aliases)
    _touch_users(conn, [r for r in rows if (r["product_id"], r["message_id"]) in new_keys], now)
    link_aliases(conn, links, now)
    return result


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


def _event_rows(
    items: Iterable[Normalised],
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], Normalised]]:
    rows: list[dict[str, Any]] = []
    owners: dict[tuple[str, str], Normalised] = {}
    for item in items:
        for event in item.events:
            key = (event.product_id, event.message_id)
            if key in owners:  # the same message twice in one batch: the first one counts
                continue
            owners[key] = item
            row = msgspec.structs.asdict(event)
            row["type"] = event.type.value
            rows.append(row)
    return rows, owners


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


def _resolve_identities(conn: sa.Connection, items: Sequence[Normalised]) -> list[Normalised]:
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


_IN_CHUNK = 500


def _inherit_accounts(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """An event that names a user but no account belongs to the user's account.

    This is the architecture's "user -> account" resolution: Pyze and Gameball
    events carry no account, yet the user they name belongs to one (set by a
    Fuzy user, a Segment group call ...). Resolved when the event is written, so
    it is the account the user belonged to at that moment.
    """
    wanted: dict[str, set[str]] = {}
    for row in rows:
        if row["user_id"] is not None and row["account_id"] is None:
            wanted.setdefault(row["product_id"], set()).add(row["user_id"])
    found: dict[tuple[str, str], str] = {}
    for product_id, external_ids in wanted.items():
        ids = sorted(external_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            query = (
                sa.select(users.c.external_id, accounts.c.external_id.label("account"))
                .join(accounts, accounts.c.id == users.c.account_id)
                .where(
                    users.c.product_id == product_id,
                    users.c.external_id.in_(ids[start : start + _IN_CHUNK]),
                )
            )
            for r in conn.execute(query):
                found[(product_id, r.external_id)] = r.account
    if found:
        for row in rows:
            if row["account_id"] is None and row["user_id"] is not None:
                row["account_id"] = found.get((row["product_id"], row["user_id"]))


def _insert_events(conn: sa.Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    if not rows:
        return set()
    statement = (
        _insert(conn, events)
        .on_conflict_do_nothing(index_elements=["product_id", "message_id"])
        .returning(events.c.product_id, events.c.message_id)
    )
    return {(r.product_id, r.message_id) for r in conn.execute(statement, rows)}


def _touch_users(conn: sa.Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """first_seen / last_seen / event_count of every identified user in the new events."""
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row["user_id"] is None:
            continue
        key = (row["product_id"], row["user_id"])
        seen = row["timestamp"]
        s = stats.get(key)
        if s is None:
            stats[key] = {
                "product_id": key[0],
                "external_id": key[1],
                "first_seen": seen,
                "last_seen": seen,
                "event_count": 1,
                "payment_ids": {},
                "created_at": now,
                "updated_at": now,
            }
        else:
            s["first_seen"] = min(s["first_seen"], seen)
            s["last_seen"] = max(s["last_seen"], seen)
            s["event_count"] += 1
    if not stats:
        return
    insert = _insert(conn, users)
    excluded = insert.excluded
    statement = insert.on_conflict_do_update(
        index_elements=["product_id", "external_id"],
        set_={
            "first_seen": sa.func.coalesce(
                _least(conn, users.c.first_seen, excluded.first_seen), excluded.first_seen
            ),
            "last_seen": sa.func.coalesce(
                _greatest(conn, users.c.last_seen, excluded.last_seen), excluded.last_seen
            ),
            "event_count": users.c.event_count + excluded.event_count,
            "updated_at": excluded.updated_at,
        },
    )
    conn.execute(
        statement, sorted(stats.values(), key=lambda s: (s["product_id"], s["external_id"]))
    )


def _apply_side_effects(
    conn: sa.Connection, product_id: str, item: Normalised, now: datetime
) -> None:
    for account in item.accounts:
        upsert_account(conn, product_id, account, now)
    for user in item.users:
        upsert_user(conn, product_id, user, now)


def ensure_account(conn: sa.Connection, product_id: str, external_id: str, now: datetime) -> int:
    found = conn.execute(
        sa.select(accounts.c.id).where(
            accounts.c.product_id == product_id, accounts.c.external_id == external_id
        )
    ).scalar()
    if found is not None:
        return int(found)
    statement = (
        _insert(conn, accounts)
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


def ensure_user(conn: sa.Connection, product_id: str, external_id: str, now: datetime) -> int:
    found = conn.execute(
        sa.select(users.c.id).where(
            users.c.product_id == product_id, users.c.external_id == external_id
        )
    ).scalar()
    if found is not None:
        return int(found)
    conn.execute(
        _insert(conn, users)
        .values(
            product_id=product_id,
            external_id=external_id,
            payment_ids={},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["product_id", "external_id"])
    )
    return ensure_user(conn, product_id, external_id, now)


def upsert_user(conn: sa.Connection, product_id: str, change: UserChange, now: datetime) -> int:
    user_id = ensure_user(conn, product_id, change.external_id, now)
    values: dict[str, Any] = {"updated_at": now}
    if change.email is not None:
        values["email"] = change.email
    if change.mobile is not None:
        values["mobile"] = change.mobile
    if change.account_external_id is not None:
        values["account_id"] = ensure_account(conn, product_id, change.account_external_id, now)
    if change.payment_ids:
        current = conn.execute(sa.select(users.c.payment_ids).where(users.c.id == user_id)).scalar()
        values["payment_ids"] = {**(current or {}), **change.payment_ids}
    conn.execute(sa.update(users).where(users.c.id == user_id).values(**values))
    if change.ops:
        _apply_profile_ops(conn, user_id, change, now)
    if change.anonymous_id is not None:
        link_alias(
            conn,
            product_id,
            AliasChange(
                alias=change.anonymous_id, user_external_id=change.external_id, kind="anonymous"
            ),
            now,
        )
    return user_id


def _apply_profile_ops(
    conn: sa.Connection, user_id: int, change: UserChange, now: datetime
) -> None:
    current = {
        row.name: Attribute(AttributeType(row.type), row.value)
        for row in conn.execute(
            sa.select(
                user_attributes.c.name, user_attributes.c.type, user_attributes.c.value
            ).where(user_attributes.c.user_id == user_id)
        )
    }
    changed: dict[str, Attribute | None] = {}
    for op in change.ops:
        try:
            changed.update(apply_ops(current, (op,)))
        except ProfileOpError as exc:
            # The op does not fit what is stored (increment a string): skip it, keep the
            # rest. Failing would retry the whole batch forever for one client's data.
            log.warning("skipped a profile operation of user %s: %s", user_id, exc)
    removed = [name for name, attr in changed.items() if attr is None]
    if removed:
        conn.execute(
            sa.delete(user_attributes).where(
                user_attributes.c.user_id == user_id, user_attributes.c.name.in_(removed)
            )
        )
    kept = [
        {
            "user_id": user_id,
            "name": name,
            "type": attr.type.value,
            "value": attr.value,
            "updated_at": now,
        }
        for name, attr in changed.items()
        if attr is not None
    ]
    if kept:
        insert = _insert(conn, user_attributes)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["user_id", "name"],
                set_={
                    "type": insert.excluded.type,
                    "value": insert.excluded.value,
                    "updated_at": insert.excluded.updated_at,
                },
            ),
            kept,
        )


def link_alias(conn: sa.Connection, product_id: str, change: AliasChange, now: datetime) -> None:
    if change.alias == change.user_external_id:
        return
    user_id = ensure_user(conn, product_id, change.user_external_id, now)
    conn.execute(
        _insert(conn, aliases)
        .values(
            product_id=product_id,
            alias=change.alias,
            kind=change.kind,
            user_id=user_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["product_id", "alias"])
    )


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
    for product_id, changes in wanted.items():
        names = sorted(changes)
        existing: set[str] = set()
        for start in range(0, len(names), _IN_CHUNK):
            existing.update(
                conn.execute(
                    sa.select(aliases.c.alias).where(
                        aliases.c.product_id == product_id,
                        aliases.c.alias.in_(names[start : start + _IN_CHUNK]),
                    )
                ).scalars()
            )
        todo = [changes[name] for name in names if name not in existing]
        if not todo:
            continue
        user_ids = _ensure_users(conn, product_id, {c.user_external_id for c in todo}, now)
        conn.execute(
            _insert(conn, aliases).on_conflict_do_nothing(index_elements=["product_id", "alias"]),
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


def _ensure_users(
    conn: sa.Connection, product_id: str, external_ids: set[str], now: datetime
) -> dict[str, int]:
    """Ids of these users, creating the missing ones (bulk)."""
    ordered = sorted(external_ids)
    conn.execute(
        _insert(conn, users).on_conflict_do_nothing(index_elements=["product_id", "external_id"]),
        [
            {
                "product_id": product_id,
                "external_id": external_id,
                "payment_ids": {},
                "created_at": now,
                "updated_at": now,
            }
            for external_id in ordered
        ],
    )
    found: dict[str, int] = {}
    for start in range(0, len(ordered), _IN_CHUNK):
        for row in conn.execute(
            sa.select(users.c.external_id, users.c.id).where(
                users.c.product_id == product_id,
                users.c.external_id.in_(ordered[start : start + _IN_CHUNK]),
            )
        ):
            found[row.external_id] = int(row.id)
    return found
