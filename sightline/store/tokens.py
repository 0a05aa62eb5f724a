"""Read credentials: per-product read keys and instance admin tokens (``sightline tokens``).

A token is ``slr_...`` (a read key) or ``sla_...`` (an admin token): 32 random bytes,
URL-safe. Only its SHA-256 is stored, with an id, a name, a short prefix to recognise it
by, and when it was created and revoked: the token itself is shown once, by whoever
created it, and never again. A write key or a server key is never a read credential.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from enum import Enum

import msgspec
import sqlalchemy as sa

from sightline.store.queries import as_utc
from sightline.store.schema import products, read_tokens

PREFIX_LENGTH = 12
DASHBOARD_TOKEN_NAME = "dashboard"  # noqa: S105 (a name, not a secret)
"""The admin token ``sightline up`` creates on first start for its dashboard link."""


class TokenKind(str, Enum):
    READ = "read"  # reads one product's data
    ADMIN = "admin"  # reads every product's data; replays dead letters


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is known of a token: never the token itself."""

    id: str
    kind: TokenKind
    product_id: str | None
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind is TokenKind.ADMIN


class NoSuchProduct(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _record(row: sa.Row[object]) -> TokenRecord:
    m = row._mapping
    return TokenRecord(
        id=m["id"],
        kind=TokenKind(m["kind"]),
        product_id=m["product_id"],
        name=m["name"],
        prefix=m["prefix"],
        created_at=as_utc(m["created_at"]) or m["created_at"],
        revoked_at=as_utc(m["revoked_at"]),
    )


def create_token(
    conn: sa.Connection, kind: TokenKind, *, product_id: str | None = None, name: str = ""
) -> tuple[TokenRecord, str]:
    """A new token: its record and the token itself (show it once; it is not kept)."""
    if (kind is TokenKind.READ) != (product_id is not None):
        raise ValueError("a read key belongs to one product; an admin token to none")
    if (
        product_id is not None
        and conn.execute(sa.select(products.c.id).where(products.c.id == product_id)).first()
        is None
    ):
        raise NoSuchProduct(f"no product {product_id!r}")
    token = ("sla_" if kind is TokenKind.ADMIN else "slr_") + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    conn.execute(
        sa.insert(read_tokens).values(
            id=token_id,
            kind=kind.value,
            product_id=product_id,
            name=name or (kind.value if product_id is None else f"{kind.value} {product_id}"),
            token_hash=hash_token(token),
            prefix=token[:PREFIX_LENGTH],
            created_at=now,
        )
    )
    record = get_token(conn, token_id)
    assert record is not None
    return record, token


def get_token(conn: sa.Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(sa.select(read_tokens).where(read_tokens.c.id == token_id)).first()
    return None if row is None else _record(row)


def find_token(conn: sa.Connection, token: str) -> TokenRecord | None:
    """The live (not revoked) token whose SHA-256 is that of ``token``."""
    row = conn.execute(
        sa.select(read_tokens).where(
            read_tokens.c.token_hash == hash_token(token), read_tokens.c.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else _record(row)


def list_tokens(conn: sa.Connection, *, include_revoked: bool = False) -> list[TokenRecord]:
    query = sa.select(read_tokens).order_by(read_tokens.c.created_at, read_tokens.c.id)
    if not include_revoked:
        query = query.where(read_tokens.c.revoked_at.is_(None))
    return [_record(row) for row in conn.execute(query)]


def revoke_token(conn: sa.Connection, token_id: str) -> TokenRecord | None:
    """Revoke ``token_id`` (at once, on every collector); ``None`` when there is no such."""
    conn.execute(
        sa.update(read_tokens)
        .where(read_tokens.c.id == token_id, read_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return get_token(conn, token_id)


def dashboard_token(conn: sa.Connection) -> TokenRecord:
    """The live admin token named ``dashboard``, created when there is none.

    Its value is never needed again: the dashboard link carries a one-time login code
    that names this token (:mod:`sightline.dashboard`), and revoking it logs every
    dashboard session out.
    """
    row = conn.execute(
        sa.select(read_tokens)
        .where(
            read_tokens.c.kind == TokenKind.ADMIN.value,
            read_tokens.c.name == DASHBOARD_TOKEN_NAME,
            read_tokens.c.revoked_at.is_(None),
        )
        .order_by(read_tokens.c.created_at)
    ).first()
    if row is not None:
        return _record(row)
    record, _ = create_token(conn, TokenKind.ADMIN, name=DASHBOARD_TOKEN_NAME)
    return record
