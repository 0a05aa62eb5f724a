"""Writing a normalised batch in one transaction, idempotent on (product, message id).

Events go first with ``ON CONFLICT DO NOTHING RETURNING``: only the events that
were really new apply their side effects (user stats, profile operations,
accounts, aliases), so a job that runs twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sightline.model import (
    AccountChange,
    AliasChange,
    AttributeOp,
    AttributeType,
    Normalised,
    UserChange,
)
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
    effects = _SideEffects(conn, now)
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
        else [r for r in rows if (r["product_id"], r["message_id"]) in new_keys]
    )
    effects.flush({(r["product_id"], r["user_id"]) for r in new_rows if r["user_id"] is not None})
    _touch_users(conn, new_rows, now)
    # The users' own anonymous ids first: they were linked before the messages' aliases.
    link_aliases(conn, effects.links + links, now)
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
    query = _statement(conn, "user_accounts", _user_accounts_query)
    for product_id, external_ids in wanted.items():
        ids = sorted(external_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            params = {"product_id": product_id, "external_ids": ids[start : start + _IN_CHUNK]}
            for r in conn.execute(query, params):
                found[(product_id, r.external_id)] = r.account
    if found:
        for row in rows:
            if row["account_id"] is None and row["user_id"] is not None:
                row["account_id"] = found.get((row["product_id"], row["user_id"]))


def _user_accounts_query(_conn: sa.Connection) -> Any:
    return (
        sa.select(users.c.external_id, accounts.c.external_id.label("account"))
        .join(accounts, accounts.c.id == users.c.account_id)
        .where(
            users.c.product_id == sa.bindparam("product_id"),
            users.c.external_id.in_(sa.bindparam("external_ids", expanding=True)),
        )
    )


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(conn: sa.Connection, name: str, build: Callable[[sa.Connection], Any]) -> Any:
    """A statement built once per dialect: building Core constructs costs more than running."""
    key = (conn.dialect.name, name)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = build(conn)
    return statement


_EVENT_COLUMNS = tuple(c.name for c in events.columns)
_EVENT_JSON = frozenset(("properties", "context"))
_EVENT_TIMES = frozenset(c.name for c in events.columns if isinstance(c.type, sa.DateTime))
_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _EVENT_COLUMNS)}) "
    "ON CONFLICT (product_id, message_id) DO NOTHING"
)
_json = msgspec.json.Encoder()


def _sqlite_time(value: datetime | None) -> str | None:
    """What SQLAlchemy's SQLite ``DateTime`` stores: the wall clock, microseconds always."""
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


def _sqlite_event_params(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as SQLAlchemy's SQLite types would bind them, without its per-value work."""
    time, encode = _sqlite_time, _json.encode
    # A batch's events mostly share a few receive times (one per request): format each once.
    # (Keyed with the zone too: equal moments in other zones have other wall clocks.)
    received_text: dict[tuple[datetime, Any], str | None] = {}
    for r in rows:
        moment = r["received_at"]
        key = (moment, moment.tzinfo)
        if key not in received_text:
            received_text[key] = time(moment)
    return [
        (
            r["id"],
            r["product_id"],
            r["message_id"],
            r["name"],
            r["type"],
            time(r["timestamp"]),
            received_text[r["received_at"], r["received_at"].tzinfo],
            time(r["sent_at"]),
            time(r["original_timestamp"]),
            r["user_id"],
            r["anonymous_id"],
            r["account_id"],
            r["session_id"],
            r["entity_type"],
            r["entity_id"],
            r["recording_id"],
            encode(r["properties"]).decode(),
            encode(r["context"]).decode(),
            r["dialect"],
            r["is_bot"],
            r["is_unused"],
        )
        for r in rows
    ]


def _insert_events(conn: sa.Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert the rows that are new; the keys of those."""
    if not rows:
        return set()
    if conn.dialect.name == "sqlite":
        # BEGIN IMMEDIATE holds the write lock: nobody else inserts until we commit, so
        # when fewer rows went in than were sent, the ids we generated tell which did.
        inserted = conn.exec_driver_sql(_SQLITE_INSERT_EVENTS, _sqlite_event_params(rows))
        if inserted.rowcount == len(rows):
            return {(r["product_id"], r["message_id"]) for r in rows}
        by_id = {r["id"]: r for r in rows}
        ids = list(by_id)
        stored: set[tuple[str, str]] = set()
        query = _statement(conn, "event_ids", _event_ids_query)
        for start in range(0, len(ids), _IN_CHUNK):
            for (event_id,) in conn.execute(query, {"ids": ids[start : start + _IN_CHUNK]}):
                row = by_id[event_id]
                stored.add((row["product_id"], row["message_id"]))
        return stored
    statement = _statement(conn, "insert_events", _insert_events_statement)
    return {(r.product_id, r.message_id) for r in conn.execute(statement, rows)}


def _event_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(events.c.id).where(events.c.id.in_(sa.bindparam("ids", expanding=True)))


def _insert_events_statement(conn: sa.Connection) -> Any:
    return (
        _insert(conn, events)
        .on_conflict_do_nothing(index_elements=["product_id", "message_id"])
        .returning(events.c.product_id, events.c.message_id)
    )


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
    conn.execute(
        _statement(conn, "touch_users", _touch_users_statement),
        sorted(stats.values(), key=lambda s: (s["product_id"], s["external_id"])),
    )


def _touch_users_statement(conn: sa.Connection) -> Any:
    insert = _insert(conn, users)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
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


class _UserEffects:
    """What a batch's messages change of one user, in batch order."""

    __slots__ = ("ops", "payment_ids", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}  # email, mobile, account_id: the last one wins
        self.payment_ids: dict[str, str] | None = None
        self.ops: list[AttributeOp] = []


class _SideEffects:
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
        query = _statement(conn, "payment_ids", _payment_ids_query)
        for start in range(0, len(wanting), _IN_CHUNK):
            chunk = {"ids": wanting[start : start + _IN_CHUNK]}
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
                _statement(conn, "update_users:" + ",".join(columns), _user_update(columns)),
                rows,
            )

    def _apply_ops(self, ids: dict[tuple[str, str], int]) -> None:
        conn = self.conn
        wanting = [(ids[key], user.ops) for key, user in self.users.items() if user.ops]
        if not wanting:
            return
        current: dict[int, dict[str, Attribute]] = {user_id: {} for user_id, _ in wanting}
        user_ids = list(current)
        query = _statement(conn, "attributes", _attributes_query)
        for start in range(0, len(user_ids), _IN_CHUNK):
            for row in conn.execute(query, {"ids": user_ids[start : start + _IN_CHUNK]}):
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
            conn.execute(_statement(conn, "delete_attributes", _delete_attribute), removed)
        if kept:
            conn.execute(_statement(conn, "upsert_attributes", _upsert_attributes), kept)


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
    insert = _insert(conn, user_attributes)
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
    query = _statement(conn, "existing_aliases", _existing_aliases_query)
    for product_id, changes in wanted.items():
        names = sorted(changes)
        existing: set[str] = set()
        for start in range(0, len(names), _IN_CHUNK):
            params = {"product_id": product_id, "aliases": names[start : start + _IN_CHUNK]}
            existing.update(conn.execute(query, params).scalars())
        todo = [changes[name] for name in names if name not in existing]
        if not todo:
            continue
        user_ids = _ensure_users(conn, product_id, sorted({c.user_external_id for c in todo}), now)
        conn.execute(
            _statement(conn, "insert_aliases", _insert_aliases_statement),
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
    return _insert(conn, aliases).on_conflict_do_nothing(index_elements=["product_id", "alias"])


def _ensure_users(
    conn: sa.Connection, product_id: str, external_ids: Iterable[str], now: datetime
) -> dict[str, int]:
    """Ids of these users, creating the missing ones (bulk) in the order given."""
    ordered = list(dict.fromkeys(external_ids))
    found = _user_ids(conn, product_id, ordered)
    missing = [external_id for external_id in ordered if external_id not in found]
    if missing:
        conn.execute(
            _statement(conn, "ensure_users", _ensure_users_statement),
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
    return _insert(conn, users).on_conflict_do_nothing(index_elements=["product_id", "external_id"])


def _user_ids(conn: sa.Connection, product_id: str, external_ids: list[str]) -> dict[str, int]:
    query = _statement(conn, "user_ids", _user_ids_query)
    found: dict[str, int] = {}
    for start in range(0, len(external_ids), _IN_CHUNK):
        params = {"product_id": product_id, "external_ids": external_ids[start : start + _IN_CHUNK]}
        for row in conn.execute(query, params):
            found[row.external_id] = int(row.id)
    return found


def _user_ids_query(_conn: sa.Connection) -> Any:
    return sa.select(users.c.external_id, users.c.id).where(
        users.c.product_id == sa.bindparam("product_id"),
        users.c.external_id.in_(sa.bindparam("external_ids", expanding=True)),
    )
