"""Who may read stored data: a read key, an admin token, or a dashboard session.

- ``Authorization: Bearer <token>``: a product's read key (``slr_...``) reads that product
  only; an admin token (``sla_...``) reads every product and may replay dead letters.
  Tokens are looked up by their SHA-256 on every request (one primary-key read in a
  thread), so a revocation holds at once on every collector.
- The dashboard's session cookie (``sightline_session``: HttpOnly, SameSite=Strict),
  opened at ``GET /ui/login?token=<one-time code>``. A request that changes something
  (POST, DELETE) and rides on the cookie must also carry ``X-Sightline-CSRF`` equal to
  the session's CSRF value (the page reads it from ``GET /api/v1/session``): a page of
  another site can neither send the SameSite cookie nor set that header.
- A write key or a server key is never a read credential: 403 saying so (401 for
  anything unknown), on every read route.
"""

from __future__ import annotations

import asyncio
import secrets

import msgspec
from starlette.requests import Request

from collector.auth import basic_auth_user, bearer_token
from collector.directory import ProductDirectory
from sightline.dashboard import COOKIE, CSRF_HEADER, Session, digest
from sightline.errors import Forbidden, Unauthorized
from sightline.redis_keys import session_key
from sightline.store.lookups import read
from sightline.store.tokens import TokenRecord, find_token, get_token

_STATE_CHANGING = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class Reader(msgspec.Struct, frozen=True):
    """A request's read credential."""

    token: TokenRecord
    session: Session | None = None

    @property
    def is_admin(self) -> bool:
        return self.token.is_admin

    def may_read(self, product_id: str | None) -> bool:
        return self.is_admin or (product_id is not None and product_id == self.token.product_id)

    def product(self, wanted: str | None) -> str | None:
        """The product a request reads: ``wanted`` if it may read it (403 otherwise); for a
        read key with no ``wanted``, its own product; for an admin, ``None`` means all."""
        if wanted is None:
            return None if self.is_admin else self.token.product_id
        if not self.may_read(wanted):
            raise Forbidden("this key may not read that product")
        return wanted


def _write_key_refusal(directory: ProductDirectory, key: str | None) -> None:
    if key and directory.table.grants.get(key) is not None:
        raise Forbidden(
            "write and server keys cannot read stored data: use a read key or an admin token"
        )


async def require_reader(request: Request, *, admin: bool = False) -> Reader:
    """The request's :class:`Reader`: 401 without a read credential, 403 for a write or
    server key, for a non-admin where ``admin`` is required, or a missing CSRF header."""
    state = request.state
    bearer = bearer_token(request)
    if request.headers.get("authorization"):
        if bearer is None:
            _write_key_refusal(state.directory, basic_auth_user(request))
            raise Unauthorized("send a read key or an admin token as Authorization: Bearer")
        token = await asyncio.to_thread(read, state.engine, lambda conn: find_token(conn, bearer))
        if token is None:
            _write_key_refusal(state.directory, bearer)
            raise Unauthorized("unknown or revoked token")
        reader = Reader(token)
    else:
        reader = await _session_reader(request)
    if admin and not reader.is_admin:
        raise Forbidden("this needs an admin token")
    return reader


async def _session_reader(request: Request) -> Reader:
    state = request.state
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        _write_key_refusal(state.directory, request.headers.get("x-write-key"))
        raise Unauthorized("no read credential: Authorization: Bearer <read key>, or log in")
    raw = await state.redis.get(session_key(digest(cookie)))
    if raw is None:
        raise Unauthorized("the session has ended: log in again")
    session = msgspec.json.decode(raw, type=Session)
    token = await asyncio.to_thread(
        read, state.engine, lambda conn: get_token(conn, session.token_id)
    )
    if token is None or token.revoked_at is not None:
        raise Unauthorized("the session's token was revoked: log in again")
    if request.method in _STATE_CHANGING:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), session.csrf.encode()):
            raise Forbidden(f"a change made with the session cookie needs {CSRF_HEADER}")
    return Reader(token, session)
