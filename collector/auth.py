"""Finding a request's key and the product it grants, and checking its origin."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from collector.directory import Grant, KeyKind, ProductDirectory
from sightline.errors import ErrorStyle, Forbidden, Unauthorized


def basic_auth_user(request: Request) -> str | None:
    """The user part of ``Authorization: Basic base64(user:password)`` (Segment's ``key:``)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def authorize(
    directory: ProductDirectory,
    key: str | None,
    *,
    origin: str | None = None,
    require: KeyKind = KeyKind.WRITE,
    style: ErrorStyle = ErrorStyle.SIGHTLINE,
) -> Grant:
    """The grant for ``key``: 401 when missing or unknown, 403 when it may not do this."""
    if not key:
        raise Unauthorized(
            "no key: send it as Basic auth user, X-Write-Key or writeKey", style=style
        )
    grant = await directory.resolve(key)
    if grant is None:
        raise Unauthorized("unknown key", style=style)
    if require is KeyKind.SERVER and grant.kind is not KeyKind.SERVER:
        raise Forbidden("this endpoint needs a server key, not a write key", style=style)
    if not grant.product.allows_origin(origin):
        raise Forbidden(f"origin {origin} is not allowed for this product", style=style)
    return grant
