"""The product's identity mode applied at acceptance (``sightline.identity``).

- ``cookieless``: a message without any id (the snippet with ``data-mode="cookieless"``
  sends none) gets the visitor's id of the day, derived here from the daily salt, the
  product, the peer's address and the user agent (``sightline.cookieless``,
  ``collector.salts``); an ``alias`` without ``previousId`` (the snippet's
  ``consent()``) gets it as ``previousId``, so the visit and the new persistent id are
  one person. The inputs are only hashed, in memory: never enqueued or logged.
- ``first-party`` with the server cookie: for a page of the collector's own site, the
  ``sl_id`` cookie's id replaces the anonymous id a message has (the cookie is older
  than a localStorage id Safari deleted after 7 days), and every answer (re)sets the
  cookie: HttpOnly, SameSite=Lax, 400 days, Secure over https.

The native paths apply it: ``/v1/batch`` (and every path that takes a native batch
through ``collector.endpoints.native.accept_batch``), ``/v1/<type>`` and the pixel. The
body is validated as before first, so a product in the default mode pays nothing: only a
body the cookieless rule could complete (a message refused for having no id) or a
product with the server cookie is decoded again.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.salts import daily_salts
from sightline.cookieless import cookieless_visitor_id
from sightline.dialects import native, native_batch
from sightline.identity import SERVER_COOKIE, SERVER_COOKIE_MAX_AGE, IdentityMode, same_site
from sightline.store.products import Product

MAX_COOKIE_ID = 64


async def cookieless_id(request: Request, product_id: str) -> str:
    """The visitor's cookieless id for ``product_id`` today."""
    salt = await daily_salts(request).today()
    client = request.client
    return cookieless_visitor_id(
        salt, product_id, client.host if client else None, request.headers.get("user-agent")
    )


def serves_cookie(request: Request, product: Product, origin: str | None) -> bool:
    """Whether the ``sl_id`` cookie applies: the product has it on, and the page (its
    ``origin``) is on the collector's own site."""
    if product.identity_mode is not IdentityMode.FIRST_PARTY or not product.server_cookie:
        return False
    return same_site(origin, request.url.scheme, request.headers.get("host", ""))


def _usable(value: str | None) -> str | None:
    """``value`` when it can be a cookie's id: 1-64 letters, digits, ``-`` and ``_``."""
    if (
        not value
        or len(value) > MAX_COOKIE_ID
        or not value.replace("-", "").replace("_", "").isalnum()
    ):
        return None
    return value if value.isascii() else None


def cookie_id(request: Request) -> str | None:
    """The id in the request's ``sl_id`` cookie, when it looks like one of ours."""
    return _usable(request.cookies.get(SERVER_COOKIE))


def set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SERVER_COOKIE,
        value,
        max_age=SERVER_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def identify_batch(
    request: Request,
    product: Product,
    raw: bytes,
    parsed: native_batch.Batch | None,
    origin: str | None,
) -> tuple[native_batch.Batch | None, str | None]:
    """The batch with the product's identity rules applied, and the cookie id to set
    (``None``: none). ``parsed`` is the plain decoding (``None``: it refused the batch
    whole); the result is ``None`` only when it is still refused."""
    if product.identity_mode is IdentityMode.COOKIELESS:
        if parsed is None or parsed.rejected:
            fill = await cookieless_id(request, product.id)
            return native_batch.decode_batch(raw, fill_id=fill), None
        return parsed, None
    if parsed is None or not serves_cookie(request, product, origin):
        return parsed, None
    known = cookie_id(request)
    if known is not None:
        return native_batch.decode_batch(raw, cookie_id=known), known
    first = next((a for _, item in parsed.items if (a := native_batch.anonymous_id_of(item))), None)
    return parsed, _usable(first)


async def identify_message(
    request: Request,
    product: Product,
    kind: str,
    raw: bytes,
    message: native.AnyMessage | None,
    origin: str | None,
) -> tuple[bytes, native.AnyMessage, str | None]:
    """One native message (``/v1/<type>``) with the product's identity rules applied, as
    :func:`identify_batch` does for a batch: the body, the message, the cookie id to set.
    ``message`` is the plain validation (``None``: it was refused); a message still
    invalid raises as before."""
    if product.identity_mode is IdentityMode.COOKIELESS:
        if message is None:
            fill = await cookieless_id(request, product.id)
            raw = bytes(native_batch.with_ids(msgspec.Raw(raw), fill, None, kind))
            message = native.validate(kind, raw)
        return raw, message, None
    if message is None:
        message = native.validate(kind, raw)  # raises what it raised
    if not serves_cookie(request, product, origin):
        return raw, message, None
    known = cookie_id(request)
    if known is not None:
        return bytes(native_batch.with_ids(msgspec.Raw(raw), None, known)), message, known
    return raw, message, _usable(native_batch.anonymous_id_of(msgspec.Raw(raw)))


async def wants_identity(request: Request, key: str | None) -> bool:
    """Whether a batch refused whole may still be completed: its key names a product in
    ``cookieless`` mode."""
    grant = await request.state.directory.resolve(key) if key else None
    return grant is not None and grant.product.identity_mode is IdentityMode.COOKIELESS
