"""``GET /p.gif``: the tracking pixel (``sightline.dialects.pixel``).

Always a 1x1 GIF that is never cached: an image tag must not break. What cannot be
used is counted (``sightline_events_rejected``); see the dialect for the rules.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from collector.auth import authorize
from collector.debug import is_debug
from collector.directory import KeyKind
from collector.endpoints.native import batch_payloads
from collector.identity import cookie_id, cookieless_id, identify_batch, serves_cookie
from collector.intake import Payload, accept
from collector.metrics import Metrics
from collector.routing import Endpoint
from sightline.dialects import native_batch, pixel
from sightline.dialects.decoding import depth_error
from sightline.errors import ClientError, Forbidden, QueueUnavailable
from sightline.origins import origin_of
from sightline.store.products import Product

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}
_json = msgspec.json.Encoder()


def gif(status: int = 200, **headers: str) -> Response:
    return Response(
        GIF, status_code=status, media_type="image/gif", headers={**NO_STORE, **headers}
    )


def _queue_unavailable(with_data: bool) -> Response:
    if not with_data:  # not stored: say so, with an image that does not break
        return gif(503, **{"Retry-After": str(QueueUnavailable.retry_after)})
    return PlainTextResponse(
        "queue unavailable",
        status_code=503,
        headers={**NO_STORE, "Retry-After": str(QueueUnavailable.retry_after)},
    )


def _loads(text: str | None) -> Any:
    """``d`` as JSON, or ``None`` when it is absent or not JSON (the worker says why)."""
    if text is None or depth_error(text.encode()) is not None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def _write_key_of(data: Any) -> str | None:
    key = data.get("writeKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


async def _payloads(
    request: Request, product: Product, params: dict[str, str], data: Any, metrics: Metrics
) -> tuple[list[Payload], datetime | None]:
    """A valid batch's messages, or the query parameters for the worker to map.

    The product's identity mode applies (``collector.identity``): a batch's messages as
    on ``/v1/batch``; a plain hit with neither ``a`` nor ``uid`` gets the ``sl_id``
    cookie's id (the product has it on, the Referer is of the collector's site) or the
    visitor's cookieless id of the day: never one id shared by every anonymous hit.
    """
    if pixel.is_batch(data):
        raw = params["d"].encode()
        try:
            parsed: native_batch.Batch | None = native_batch.decode_batch(raw)
        except ClientError:
            parsed = None
        try:
            referer = origin_of(request.headers.get("referer"))
            parsed, _ = await identify_batch(request, product, raw, parsed, referer)
        except ClientError:
            parsed = None
        if parsed is None:
            metrics.count_rejected(pixel.NAME, "invalid_batch")
        else:
            if parsed.rejected:
                metrics.count_rejected(pixel.NAME, "invalid_message")
            return batch_payloads(parsed), parsed.wire.sentAt
    elif "d" not in params and not params.get("a") and not params.get("uid"):
        referer = origin_of(request.headers.get("referer"))
        known = cookie_id(request) if serves_cookie(request, product, referer) else None
        params["a"] = known or await cookieless_id(request, product.id)
    return [Payload(pixel.NAME, msgspec.Raw(_json.encode(params)))], None


async def track_pixel(request: Request) -> Response:
    if request.method == "HEAD":  # a link checker or a proxy probing the image: not a view
        return gif()
    metrics: Metrics = request.state.metrics
    if len(request.url.query) > pixel.MAX_QUERY:
        metrics.count_rejected(pixel.NAME, "too_large")
        return gif()
    params = dict(request.query_params)
    key = params.pop("k", None)
    data = _loads(params.get("d"))
    try:
        grant = await authorize(
            request.state.directory,
            key or _write_key_of(data),
            origin=origin_of(request.headers.get("referer")),
        )
        if grant.kind is KeyKind.SERVER:
            # A URL ends up in access logs, proxies and browser history: no secret in it.
            raise Forbidden("a pixel takes the public write key, never a server key")
    except ClientError as exc:
        if is_debug(request):
            raise  # a debug request shows why, where an image tag gets its image
        metrics.count_rejected(pixel.NAME, f"auth_{exc.status}")
        return gif()
    try:
        payloads, sent_at = await _payloads(request, grant.product, params, data, metrics)
        await accept(
            request,
            dialect=pixel.NAME,
            product_id=grant.product.id,
            key=grant.kind,
            payloads=payloads,
            sent_at=sent_at,
        )
    except QueueUnavailable:
        return _queue_unavailable("d" in params)
    return gif()


_PARAMETERS = (
    ("k", "write key (optional when `d` carries `writeKey`)"),
    (
        "d",
        "JSON: one native message, or a whole `/v1/batch` body "
        '(`{"writeKey", "sentAt", "batch": [...]}`); replaces the plain fields',
    ),
    ("t", "type (default page)"),
    ("e", "event name"),
    ("u", "url"),
    ("r", "referrer"),
    ("ti", "title"),
    (
        "a",
        "anonymousId (without it and `uid`: the visitor's `sl_id` cookie or cookieless id)",
    ),
    ("uid", "userId"),
    ("m", "messageId"),
)

ENDPOINTS = (
    Endpoint(
        "/p.gif",
        ("GET",),
        track_pixel,
        "pixel.track_pixel",
        "Tracking pixel: always a 1x1 GIF (503 when the queue is away)",
        key=KeyKind.WRITE,
        description=(
            "Records the event(s) of its query string and answers a 1x1 GIF, never cached, "
            "whatever it could use: what it cannot is counted (and dead-lettered when the key "
            "names a product). A batch in `d` is validated like `/v1/batch`, message by message: "
            "the valid ones are stored, the invalid ones dead-lettered with their reason. "
            "When the request has a `Referer` with an http(s) or extension "
            "origin, the product's allowed origins apply to it. 503 (`Retry-After: 1`) when the "
            "queue is away: a GIF, except for a request with `d`, which gets text and no image "
            "so that a script's `Image` fires `error` and retries."
        ),
        responses={200: None, 503: None},
        media_by_status={503: ("image/gif", "text/plain")},
        parameters=tuple(
            {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
            for name, what in _PARAMETERS
        ),
        media="image/gif",
    ),
)
