"""Aliases linked by the writer (``sightline.store.effects.link_aliases``; PostgreSQL:
one statement per product): the first link of an alias wins, an existing link never
moves, the missing users are created, and a user another transaction creates at the
same moment still gets the link."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from sightline.model import AliasChange
from sightline.store.db import make_engine
from sightline.store.effects import _ensure_users, link_aliases
from sightline.store.products import create_product
from sightline.store.schema import aliases, users

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _links(conn: sa.Connection, product: str) -> dict[str, tuple[str, str]]:
    query = (
        sa.select(aliases.c.alias, aliases.c.kind, users.c.external_id)
        .join(users, users.c.id == aliases.c.user_id)
        .where(aliases.c.product_id == product)
    )
    return {alias: (kind, user) for alias, kind, user in conn.execute(query)}


def test_links_in_batch_order_never_moved(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id
        other = create_product(conn, "Q").id
    with engine.begin() as conn:
        link_aliases(conn, [(product, AliasChange("old", "first", "anonymous"))], NOW)
    with engine.begin() as conn:
        refused = link_aliases(
            conn,
            [
                (product, AliasChange("b", "u2")),
                (product, AliasChange("a", "u1", "anonymous")),
                (product, AliasChange("a", "u2")),  # the first link of "a" wins
                (product, AliasChange("old", "u1")),  # linked already: stays
                (product, AliasChange("u3", "u3")),  # a user's own id: nothing
                (other, AliasChange("a", "u9")),
            ],
            NOW,
        )
        assert refused == 0
        assert _links(conn, product) == {
            "old": ("anonymous", "first"),
            "a": ("anonymous", "u1"),
            "b": ("alias", "u2"),
        }
        assert _links(conn, other) == {"a": ("alias", "u9")}
        assert conn.execute(
            sa.select(users.c.external_id).where(users.c.product_id == product)
        ).scalars().all() == ["first", "u1", "u2"]
        assert conn.execute(
            sa.select(users.c.external_id).where(users.c.product_id == other)
        ).scalars().all() == ["u9"]
    engine.dispose()


def test_a_server_owned_id_is_no_alias_for_a_restricted_link(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id
        owner = _ensure_users(conn, product, ["boss"], NOW)["boss"]
        conn.execute(sa.update(users).where(users.c.id == owner).values(server_owned=True))
    with engine.begin() as conn:
        refused = link_aliases(
            conn,
            [(product, AliasChange("boss", "intruder")), (product, AliasChange("x", "intruder"))],
            NOW,
            restricted={(product, "boss", "intruder"), (product, "x", "intruder")},
        )
        assert refused == 1
        assert _links(conn, product) == {"x": ("alias", "intruder")}
    engine.dispose()


def test_a_user_created_meanwhile_by_another_transaction_gets_the_link(database_url: str) -> None:
    """PostgreSQL: the statement waits for the other transaction's user (its insert
    conflicts) and does not see it once committed (its snapshot is older): the link is
    made by the statements after it. SQLite: one writer at a time, nothing to race."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product = create_product(conn, "P").id
    postgres = engine.dialect.name == "postgresql"
    linked = threading.Event()
    errors: list[BaseException] = []

    def link() -> None:
        try:
            with engine.begin() as conn:
                link_aliases(conn, [(product, AliasChange("anon", "late", "anonymous"))], NOW)
            linked.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=link)
    with engine.begin() as other:
        _ensure_users(other, product, ["late"], NOW)
        if postgres:
            thread.start()
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'WITH wanted AS%'"
            )
            with engine.connect() as watcher:
                while not watcher.execute(waiting).scalar() and thread.is_alive():
                    watcher.rollback()
                    threading.Event().wait(0.01)
    if not postgres:
        thread.start()
    thread.join(30)
    assert not errors
    assert linked.is_set()
    with engine.connect() as conn:
        assert _links(conn, product) == {"anon": ("anonymous", "late")}
        count = sa.select(sa.func.count()).select_from(users)
        assert conn.execute(count).scalar() == 1
    engine.dispose()
