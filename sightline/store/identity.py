"""Who an event belongs to: a person across logins and aliases, an account with its subtree.

Both are recursive common table expressions, which SQLite and PostgreSQL run alike:

- a user's **identities** are their external id plus every alias linked to them
  (anonymous ids joined on ``identify``, Segment ``alias``, Pyze ``pyze_id`` /
  ``user_alias``, ids merged into them), followed through users that are themselves
  aliased, so a chain ``anon -> old id -> user`` resolves;
- an account's **tree** is the account and its sub-accounts at any depth
  (``accounts.parent_id``); ``UNION`` (not ``UNION ALL``) stops at a cycle.

An event is a user's when its ``user_id`` is one of their identities, or it has no
``user_id`` and its ``anonymous_id`` is one: the page views before the login belong
to the person who then logged in, while events another person sent later from the
same browser (with their own ``user_id``) stay theirs.
"""

from __future__ import annotations

import sqlalchemy as sa

from sightline.model import Event
from sightline.store.queries import event_from_row
from sightline.store.schema import accounts, aliases, events, users


def identities(product_id: str, external_user_id: str) -> sa.CTE:
    """Every id the user ``external_user_id`` has sent events under (one ``name`` column)."""
    seed = sa.select(sa.literal(external_user_id, sa.String).label("name")).cte(
        "identities", recursive=True
    )
    linked = (
        sa.select(aliases.c.alias.label("name"))
        .join(users, users.c.id == aliases.c.user_id)
        .join(seed, users.c.external_id == seed.c.name)
        .where(aliases.c.product_id == product_id, users.c.product_id == product_id)
    )
    return seed.union(linked)


def account_tree(product_id: str, external_account_id: str) -> sa.CTE:
    """The account and all its sub-accounts (``id`` and ``external_id`` columns)."""
    root = (
        sa.select(accounts.c.id, accounts.c.external_id)
        .where(
            accounts.c.product_id == product_id,
            accounts.c.external_id == external_account_id,
        )
        .cte("account_tree", recursive=True)
    )
    children = sa.select(accounts.c.id, accounts.c.external_id).join(
        root, accounts.c.parent_id == root.c.id
    )
    return root.union(children)


def _belongs_to(names: sa.Select[tuple[str]] | list[str]) -> sa.ColumnElement[bool]:
    return sa.or_(
        events.c.user_id.in_(names),
        sa.and_(events.c.user_id.is_(None), events.c.anonymous_id.in_(names)),
    )


def user_condition(product_id: str, external_user_id: str) -> sa.ColumnElement[bool]:
    """An event belongs to the person ``external_user_id`` (see the module doc)."""
    ids = identities(product_id, external_user_id)
    return _belongs_to(sa.select(ids.c.name))


PERSON_IDS_INLINE = 1000
"""Most ids :func:`person_condition` lists as values (beyond: the subquery)."""


def person_condition(
    conn: sa.Connection, product_id: str, external_user_id: str
) -> sa.ColumnElement[bool]:
    """:func:`user_condition` with the person's ids looked up first and listed as values.

    Same events; a different plan. With a subquery PostgreSQL cannot estimate how many
    events a person has, and for "newest 50" it scans the product's events newest first,
    filtering, which is quick for a busy user and a scan of every event for one with a
    handful (seconds on a million). Values it can estimate from its statistics: the user
    and anonymous-id indexes for a light user (``bench/query.py --explain``).
    """
    ids = identities(product_id, external_user_id)
    found = sorted(conn.execute(sa.select(ids.c.name)).scalars())
    if len(found) > PERSON_IDS_INLINE:
        return _belongs_to(sa.select(ids.c.name))
    return _belongs_to(found)


def account_condition(product_id: str, external_account_id: str) -> sa.ColumnElement[bool]:
    """An event belongs to the account or a sub-account, directly or through its person."""
    tree = account_tree(product_id, external_account_id)
    members = (
        sa.select(users.c.external_id.label("name"))
        .where(users.c.product_id == product_id, users.c.account_id.in_(sa.select(tree.c.id)))
        .cte("members", recursive=True)
    )
    linked = (
        sa.select(aliases.c.alias.label("name"))
        .join(users, users.c.id == aliases.c.user_id)
        .join(members, users.c.external_id == members.c.name)
        .where(aliases.c.product_id == product_id, users.c.product_id == product_id)
    )
    names = members.union(linked)
    return sa.or_(
        events.c.account_id.in_(sa.select(tree.c.external_id)),
        _belongs_to(sa.select(names.c.name)),
    )


def _events(conn: sa.Connection, product_id: str, where: sa.ColumnElement[bool]) -> list[Event]:
    query = (
        sa.select(events)
        .where(events.c.product_id == product_id, where)
        .order_by(events.c.timestamp, events.c.id)
    )
    return [event_from_row(row) for row in conn.execute(query)]


def events_of_user(conn: sa.Connection, product_id: str, external_user_id: str) -> list[Event]:
    """The person's events, oldest first: before and after login, under any alias."""
    return _events(conn, product_id, user_condition(product_id, external_user_id))


def account_ids(conn: sa.Connection, product_id: str, external_account_id: str) -> list[str]:
    """The external ids of the account and its sub-accounts at any depth."""
    tree = account_tree(product_id, external_account_id)
    return sorted(conn.execute(sa.select(tree.c.external_id)).scalars())


def events_of_account(
    conn: sa.Connection, product_id: str, external_account_id: str
) -> list[Event]:
    """Events of the account and its sub-accounts at any depth, oldest first.

    An event counts when its ``account_id`` is in the tree, or its person (by the
    rules of :func:`events_of_user`) belongs to an account in the tree.
    """
    return _events(conn, product_id, account_condition(product_id, external_account_id))
