"""Umami's ``POST /api/send`` (``sightline.dialects.umami``).

``payload.website`` names the product: a website id the product registered for
``umami`` (``sightline products ids``), or its write key. Refusals are Umami's: an
unknown website is ``400 {"error": {"message": "Website not found.", ...}}``, an
origin the product does not allow ``403 {"error": {"message": "Forbidden", ...}}``.

The answer is what Umami's trackers read: ``{"cache", "sessionId", "visitId"}``. The
current tracker sends ``cache`` back in ``x-umami-cache``; the older one keeps the
whole answer text and sends that back, which is read as well.
"""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize_site
from collector.bodies import read_body
from collector.debug import is_debug
from collector.directory import KeyKind
from collector.intake import Payload, accept
from collector.routing import Endpoint, ErrorBody
from collector.salts import daily_salts
from sightline.cookieless import cookieless_visitor_id, derived_uuid
from sightline.dialects import umami
from sightline.errors import ClientError, FieldError

_json = msgspec.json.Encoder()


class UmamiAnswer(msgspec.Struct, kw_only=True):
    """What Umami answers a collection call; its tracker keeps ``cache``."""

    cache: str
    sessionId: str
    """The visitor (``anonymous_id``)."""
    visitId: str
    """The visit (``session_id``)."""


class UmamiErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    code: str
    status: int


class UmamiError(msgspec.Struct, kw_only=True):
    """Umami's error body (``badRequest`` / ``forbidden`` in its src/lib/response.ts)."""

    error: UmamiErrorDetail


class BadRequest(msgspec.Struct, kw_only=True):
    """A 400: an invalid call, as every endpoint refuses one (``success``, ``code``,
    ``message``, ``error`` text, ``errors``), or Umami's ``{"error": {...}}`` for an
    unknown website."""

    error: str | UmamiErrorDetail
    success: bool | None = None
    code: str | None = None
    message: str | None = None
    errors: list[FieldError] = msgspec.field(default_factory=list)


def _refusal(refusal: ClientError) -> Response:
    if refusal.status == 403:
        detail = UmamiErrorDetail(message="Forbidden", code="forbidden", status=403)
    else:  # no such website: Umami's badRequest
        detail = UmamiErrorDetail(message="Website not found.", code="bad-request", status=400)
    return Response(
        _json.encode(UmamiError(error=detail)),
        status_code=detail.status,
        media_type="application/json",
    )


async def send(request: Request) -> Response:
    raw = await read_body(request, umami.MAX_BODY_BYTES)
    call = umami.validate(raw)
    payload = call.payload
    try:
        grant = await authorize_site(
            request.state.directory,
            umami.NAME,
            payload.website,
            origin=request.headers.get("origin"),
        )
    except ClientError as refusal:
        if is_debug(request):
            raise
        return _refusal(refusal)
    product_id = grant.product.id
    now = int(time.time())
    salt = await daily_salts(request).today()
    cache = umami.read_cache(request.headers.get("x-umami-cache"))
    cached = cache if cache is not None and cache.p == product_id else None
    client = request.client
    visitor = (
        payload.vid
        or (cached.v if cached is not None else None)
        or cookieless_visitor_id(
            salt,
            product_id,
            payload.ip or (client.host if client else None),
            payload.userAgent or request.headers.get("user-agent"),
        )
    )
    visit = (cached.visit_at(product_id, now) if cached is not None else None) or derived_uuid(
        salt, "visit", product_id, visitor, str(now // 3600)
    )
    body = _json.encode({"visitor": visitor, "visit": visit, "call": msgspec.Raw(raw)})
    await accept(
        request,
        dialect=umami.NAME,
        product_id=product_id,
        key=grant.kind,
        payloads=[Payload(call.type, msgspec.Raw(body))],
    )
    token = umami.write_cache(umami.Cache(p=product_id, v=visitor, s=visit, t=now))
    answer = UmamiAnswer(cache=token, sessionId=visitor, visitId=visit)
    return Response(_json.encode(answer), media_type="application/json")


ENDPOINTS = (
    Endpoint(
        "/api/send",
        ("POST",),
        send,
        "umami.send",
        "Umami: record a page view, a custom event or an identify call",
        key=KeyKind.WRITE,
        key_in_body=True,
        request=umami.UmamiCall,
        responses={
            200: UmamiAnswer,
            400: BadRequest,
            403: UmamiError,
            413: ErrorBody,
            415: ErrorBody,
            429: ErrorBody,
            503: ErrorBody,
        },
        description=(
            "`payload.website` is a website id the product registered for `umami`, or its "
            "write key. An unknown website is Umami's `400` (`Website not found.`), an origin "
            "the product does not allow Umami's `403`; an invalid call is a `400` naming the "
            "field. The answer's `cache` may come back in `x-umami-cache`: it keeps the "
            "visitor and the visit (30 minutes)."
        ),
    ),
)
