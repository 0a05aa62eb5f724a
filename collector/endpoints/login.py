"""Dashboard log-in: ``GET /ui/login?token=<one-time code>`` and ``POST /ui/logout``.

The code comes from the link ``sightline up`` (or ``sightline tokens link``) prints; it
is taken from Redis with ``GETDEL``, so a link logs in once. The answer sets the
session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and redirects to ``/ui``.
See ``sightline.dashboard`` and ``collector.readauth``.
"""

from __future__ import annotations

import asyncio
import secrets

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collector.routing import Endpoint, ErrorBody
from sightline.dashboard import COOKIE, SESSION_TTL, Session, digest
from sightline.errors import Unauthorized
from sightline.redis_keys import login_code_key, session_key
from sightline.store.lookups import read
from sightline.store.tokens import get_token

DASHBOARD_PATH = "/ui"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


async def login(request: Request) -> Response:
    code = request.query_params.get("token", "")
    if not code or len(code) > 200:
        raise Unauthorized("no login code: open the link `sightline up` printed")
    state = request.state
    token_id = await state.redis.getdel(login_code_key(digest(code)))
    if token_id is None:
        raise Unauthorized(
            "this login link was used or has expired: `sightline tokens link` prints a new one"
        )
    token = await asyncio.to_thread(
        read, state.engine, lambda conn: get_token(conn, token_id.decode())
    )
    if token is None or token.revoked_at is not None:
        raise Unauthorized("the token of this login link was revoked")
    session_id = secrets.token_urlsafe(32)
    session = Session(token_id=token.id, csrf=secrets.token_urlsafe(24))
    await state.redis.set(
        session_key(digest(session_id)), msgspec.json.encode(session), ex=SESSION_TTL
    )
    response = RedirectResponse(DASHBOARD_PATH, status_code=303, headers=_NO_STORE)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_TTL,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await request.state.redis.delete(session_key(digest(cookie)))
    response = Response(status_code=204, headers=_NO_STORE)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


ENDPOINTS = (
    Endpoint(
        "/ui/login",
        ("GET",),
        login,
        "ui.login",
        "Exchange a one-time login code for a dashboard session cookie, then go to /ui",
        responses={303: None, 401: ErrorBody},
        parameters=(
            {
                "name": "token",
                "in": "query",
                "required": True,
                "schema": {"type": "string"},
                "description": "The one-time login code of the link `sightline up` printed",
            },
        ),
        media="text/plain",
    ),
    Endpoint(
        "/ui/logout",
        ("POST",),
        logout,
        "ui.logout",
        "End the dashboard session",
        responses={204: None},
    ),
)
