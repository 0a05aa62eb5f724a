"""Dashboard log-in: ``GET /ui/login?token=<one-time code>`` and ``POST /ui/logout``.

The code comes from the link ``sightline up`` (or ``sightline tokens link``) prints; it
is taken from Redis with ``GETDEL``, so a link logs in once. The answer sets the
session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and redirects to ``/ui``.
See ``sightline.dashboard`` and ``collector.readauth``.
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collector.bodies import read_body
from collector.routing import Endpoint, ErrorBody
from sightline.dashboard import COOKIE, SESSION_TTL, Session, digest
from sightline.errors import Forbidden, Unauthorized
from sightline.redis_keys import login_code_key, session_key
from sightline.store.lookups import read
from sightline.store.tokens import find_token, get_token

DASHBOARD_PATH = "/ui"
FORM_LIMIT = 4096
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
    return await _open_session(request, token.id)


async def login_with_token(request: Request) -> Response:
    """A login form's POST (``token=`` a read key or an admin token): a session for it.

    Only from this origin: a page of another site cannot log a browser in as someone else.
    """
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise Forbidden("log in from this site's own page")
    body = await read_body(request, FORM_LIMIT)
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    value = (values.get("token") or [""])[0]
    if not value or len(value) > 200:
        raise Unauthorized("send the token as the form field token")
    state = request.state
    token = await asyncio.to_thread(read, state.engine, lambda conn: find_token(conn, value))
    if token is None:
        raise Unauthorized("unknown or revoked token")
    return await _open_session(request, token.id)


async def _open_session(request: Request, token_id: str) -> Response:
    state = request.state
    session_id = secrets.token_urlsafe(32)
    session = Session(token_id=token_id, csrf=secrets.token_urlsafe(24))
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
        "/ui/login",
        ("POST",),
        login_with_token,
        "ui.login_with_token",
        "Log in with a read key or an admin token (form field token), then go to /ui",
        responses={
            303: None,
            400: ErrorBody,
            401: ErrorBody,
            403: ErrorBody,
            413: ErrorBody,
            415: ErrorBody,
        },
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
