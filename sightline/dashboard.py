"""Dashboard log-in: one-time login codes and the sessions they open.

``sightline up`` (or ``sightline tokens link``) mints a **login code**: 32 random bytes
whose SHA-256 is a Redis key naming an admin token, for ``LOGIN_CODE_TTL`` seconds. The
printed link ``http://HOST:PORT/ui/login?token=CODE`` is exchanged once (``GETDEL``) by
the collector for a **session**: another random value in an HttpOnly, SameSite=Strict
cookie, whose SHA-256 is a Redis key holding the admin token's id and the session's CSRF
value, for ``SESSION_TTL`` seconds. The code is not the admin token: a link that leaked
from a terminal's scrollback is useless once used or expired, and revoking the token
ends every session opened through it.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import quote

import msgspec
import sqlalchemy as sa
from redis import Redis

from sightline.redis_keys import login_code_key
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.store.tokens import dashboard_token

LOGIN_CODE_TTL = 15 * 60
SESSION_TTL = 12 * 3600
COOKIE = "sightline_session"
CSRF_HEADER = "X-Sightline-CSRF"


class Session(msgspec.Struct, frozen=True):
    token_id: str
    """The admin token (``read_tokens.id``) the session was opened with."""
    csrf: str
    """What the page sends back in ``X-Sightline-CSRF`` on POST and DELETE."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def mint_login_code(redis: Redis, token_id: str, ttl: int = LOGIN_CODE_TTL) -> str:
    """A one-time login code for the admin token ``token_id``, valid ``ttl`` seconds."""
    code = secrets.token_urlsafe(32)
    redis.set(login_code_key(digest(code)), token_id, ex=ttl)
    return code


def login_url(host: str, port: int, code: str) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/ui/login?token={quote(code)}"


def dashboard_link(settings: Settings, engine: sa.Engine) -> str:
    """A fresh one-time login link for the ``dashboard`` admin token (created if none)."""
    with engine.begin() as conn:
        token = dashboard_token(conn)
    redis = connect(settings, timeout=5.0)
    try:
        code = mint_login_code(redis, token.id)
    finally:
        redis.close()
    return login_url(settings.host, settings.port, code)
