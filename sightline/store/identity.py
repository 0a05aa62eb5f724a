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
"""Most ids :func:`person_branches` lists as values (beyond: the subquery)."""


def person_branches(
    conn: sa.Connection, product_id: str, external_user_id: str
) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """:func:`user_condition` as its two alternatives (the user id is one of the person's
    ids; no user id and the anonymous id is one), the ids looked up first and listed as
    values: each alternative alone is a range of an index in time order
    (``ix_events_product_user``, ``ix_events_product_anonymous``).

    Same events; a plan that does not depend on estimates. With the ids as a subquery
    PostgreSQL cannot estimate how many events a person has, and with the two
    alternatives OR-ed either database may, for "newest 50", walk the product's events
    newest first filtering each (a scan of a million for a light user) or fetch and sort
    every event of a busy one (``bench/query.py --explain``).
    """
    ids = identities(product_id, external_user_id)
    found = sorted(conn.execute(sa.select(ids.c.name)).scalars())
    names: sa.Select[tuple[str]] | list[str] = (
        sa.select(ids.c.name) if len(found) > PERSON_IDS_INLINE else found
    )
    return (
        events.c.user_id.in_(names),
        sa.and_(events.c.user_id.is_(None), events.c.anonymous_id.in_(names)),
    )


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
