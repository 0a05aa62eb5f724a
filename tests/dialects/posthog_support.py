"""What the PostHog tests read back from the store: profiles, aliases, accounts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sightline.store.schema import accounts, aliases, user_attributes, users


def profile(engine: sa.Engine, product_id: str, external_id: str) -> dict[str, Any]:
    """The user's row (email, account external id) and its attributes by name."""
    with engine.connect() as conn:
        user = conn.execute(
            sa.select(users.c.id, users.c.email, accounts.c.external_id.label("account"))
            .select_from(users.outerjoin(accounts, users.c.account_id == accounts.c.id))
            .where(users.c.product_id == product_id, users.c.external_id == external_id)
        ).one_or_none()
        if user is None:
            return {}
        attributes = conn.execute(
            sa.select(user_attributes.c.name, user_attributes.c.value).where(
                user_attributes.c.user_id == user.id
            )
        ).all()
    return {
        "email": user.email,
        "account": user.account,
        "attributes": {row.name: row.value for row in attributes},
    }


def alias_owners(engine: sa.Engine, product_id: str) -> dict[str, str]:
    """Every alias of the product and the external id of the user it names."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(aliases.c.alias, users.c.external_id)
            .join(users, aliases.c.user_id == users.c.id)
            .where(aliases.c.product_id == product_id)
        ).all()
    return {row.alias: row.external_id for row in rows}


def account(engine: sa.Engine, product_id: str, external_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(accounts.c.name, accounts.c.traits).where(
                accounts.c.product_id == product_id, accounts.c.external_id == external_id
            )
        ).one_or_none()
    return {} if row is None else {"name": row.name, "traits": row.traits}
