"""Erasing a person over the API: ``POST /api/v1/users/{id}/forget`` or
``DELETE /api/v1/users/{id}``.

The credential is the product's **server key** (``Authorization: Bearer`` or
``X-API-Key``; it erases in its own product only) or an **admin token** (with
``?product=ID``). A write key (public: it is in every page) and a read key (it reads,
it does not change) are refused with 403, an unknown credential with 401. The erasure
itself is ``sightline.store.erasure.forget_user``, run in a thread; the answer is its
receipt, which holds no personal data. Not served under ``/debug``.
"""

from __future__ import annotations

import asyncio
import hashlib

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import basic_auth_user, bearer_token
from collector.directory import KeyKind
from collector.routing import READ_ERRORS, Endpoint, Schema
from sightline.errors import FieldError, Forbidden, InvalidInput, NotFound, Unauthorized
from sightline.live_erasure import purge_live_async
from sightline.store.erasure import ErasureReceipt, count_outside, forget_user
from sightline.store.lookups import read
from sightline.store.products import get_product
from sightline.store.tokens import find_token

PREFIX = "/api/v1"
_json = msgspec.json.Encoder()


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", [FieldError(field, reason)])


def _text(value: str, name: str) -> str:
    if not value or len(value) > 255 or "\x00" in value:
        raise _bad(name, "1 to 255 characters, no NUL")
    return value


def fingerprint(key: str) -> str:
    """What a receipt says of a server key: enough to tell keys apart, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


async def requester(request: Request) -> tuple[str, str]:
    """The product a request may erase in, and who asks (for the receipt)."""
    state = request.state
    wanted = request.query_params.get("product") or None
    if wanted is not None:
        _text(wanted, "product")
    key = bearer_token(request) or request.headers.get("x-api-key") or None
    if key is None:
        basic = basic_auth_user(request) or request.headers.get("x-write-key")
        if basic and state.directory.table.grants.get(basic) is not None:
            raise Forbidden("erasing needs the product's server key or an admin token (Bearer)")
        raise Unauthorized("send the product's server key or an admin token as Bearer")
    grant = await state.directory.resolve(key)
    if grant is not None:
        if grant.kind is not KeyKind.SERVER:
            raise Forbidden("a write key cannot erase: use the server key or an admin token")
        if wanted is not None and wanted != grant.product.id:
            raise Forbidden("this key may not erase in another product")
        return grant.product.id, f"server-key:{fingerprint(key)}"
    token = await asyncio.to_thread(read, state.engine, lambda conn: find_token(conn, key))
    if token is None:
        raise Unauthorized("unknown key or token")
    if not token.is_admin:
        raise Forbidden("a read key cannot erase: use the server key or an admin token")
    if wanted is None:
        raise _bad("product", "required with an admin token")
    product = await asyncio.to_thread(read, state.engine, lambda conn: get_product(conn, wanted))
    if product is None:
        raise NotFound("no such product")
    return product.id, f"token:{token.id}"


async def forget(request: Request) -> Response:
    product_id, who = await requester(request)
    user_id = _text(request.path_params["id"], "id")
    state = request.state
    erasure = await asyncio.to_thread(
        forget_user, state.engine, product_id, user_id, requested_by=who
    )
    receipt = erasure.receipt
    live = await purge_live_async(state.redis, state.settings.queue_name, product_id, erasure.ids)
    if live:
        counted = await asyncio.to_thread(
            count_outside, state.engine, receipt.reference, {"live_stream": live}
        )
        receipt = counted or receipt
    return Response(_json.encode(receipt), media_type="application/json")


ID = (
    {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The user id, or any of its aliases (anonymous ids)",
    },
)
PRODUCT = {
    "name": "product",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The product (required with an admin token; a server key's own otherwise)",
}
DESCRIPTION = (
    "Deletes the person's events (before and after login, under every alias), profile, "
    "aliases, account links, sessions and the dead letters naming them, in bounded "
    "transactions, and puts every id on the product's suppression list: later events for "
    "them are dropped by the worker. Idempotent: a repeat finishes an interrupted erasure "
    "and answers the same receipt. Needs the product's server key or an admin token; "
    "never a write key or a read key."
)
ERRORS: dict[int, Schema] = {**READ_ERRORS}


def _endpoint(path: str, method: str, name: str, summary: str) -> Endpoint:
    return Endpoint(
        PREFIX + path,
        (method,),
        forget,
        f"erasure.{name}",
        summary,
        key=KeyKind.SERVER,
        schemes=("bearerAuth", "apiKeyHeader"),
        responses={200: ErasureReceipt, **ERRORS},
        parameters=(*ID, PRODUCT),
        description=DESCRIPTION,
    )


ENDPOINTS = (
    _endpoint("/users/{id}/forget", "POST", "forget", "Erase a user and suppress their ids"),
    _endpoint("/users/{id}", "DELETE", "delete_user", "Erase a user (as POST .../forget)"),
)
