"""The pixel dialect: ``GET /p.gif``, for ``<noscript>``, e-mail opens and the snippet's fallback.

The query string carries the write key (``k``) and either one native message as
JSON (``d``) or plain fields: ``t`` type (default ``page``), ``e`` event name,
``u`` url, ``r`` referrer, ``ti`` title, ``a`` anonymousId, ``uid`` userId,
``m`` messageId. The answer is always a 1x1 GIF that is never cached: an image
tag must not break. What cannot be used is counted, and, when the key names a
product, enqueued anyway so the worker dead-letters it with the reason.
The mapping reuses the native dialect's: a pixel message IS a native message.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize
from collector.dialects import native
from collector.envelope import Envelope
from collector.errors import ClientError, QueueUnavailable
from collector.intake import Payload, accept
from collector.metrics import Metrics
from sightline.model import Normalised

NAME = "pixel"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_QUERY = 8 * 1024
PLAIN_FIELDS = {"e": "event", "a": "anonymousId", "uid": "userId", "m": "messageId"}
_json = msgspec.json.Encoder()


def _gif(status: int = 200, **headers: str) -> Response:
    return Response(
        GIF,
        status_code=status,
        media_type="image/gif",
        headers={"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache", **headers},
    )


async def track_pixel(request: Request) -> Response:
    metrics: Metrics = request.state.metrics
    query = request.url.query
    if len(query) > MAX_QUERY:
        metrics.count_rejected(NAME, "too_large")
        return _gif()
    params = dict(request.query_params)
    try:
        grant = await authorize(request.state.directory, params.pop("k", None), origin=None)
    except ClientError as exc:
        metrics.count_rejected(NAME, f"auth_{exc.status}")
        return _gif()
    try:
        await accept(
            request,
            dialect=NAME,
            product_id=grant.product.id,
            payloads=[Payload("pixel", msgspec.Raw(_json.encode(params)))],
        )
    except QueueUnavailable:
        # Not stored: say so (the browser still gets an image, not a broken one).
        return _gif(503, **{"Retry-After": "1"})
    return _gif()


def message_of(params: dict[str, Any]) -> dict[str, Any]:
    """The native message a pixel's query string stands for."""
    if "d" in params:
        decoded = msgspec.json.decode(params["d"])
        if not isinstance(decoded, dict):
            raise ValueError("d must be a JSON object")
        return decoded
    message: dict[str, Any] = {"type": params.get("t") or "page"}
    for short, field in PLAIN_FIELDS.items():
        if params.get(short):
            message[field] = params[short]
    page = {
        name: params[short]
        for short, name in (("u", "url"), ("r", "referrer"), ("ti", "title"))
        if params.get(short)
    }
    if page:
        message["context"] = {"page": page}
    if message["type"] == "page" and "ti" in params:
        message.setdefault("name", params["ti"])
    if "anonymousId" not in message and "userId" not in message:
        message["anonymousId"] = "pixel-anonymous"
    return message


def normalise(envelope: Envelope) -> Normalised:
    if not isinstance(envelope.body, dict):
        raise ValueError("a pixel envelope holds its query parameters")
    try:
        message = message_of(envelope.body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"d is not JSON: {exc}") from None
    kind = message.get("type")
    if not message.get("userId") and not message.get("anonymousId"):
        raise ValueError("either userId or anonymousId is required")
    if kind not in native.MESSAGE_TYPES:
        raise ValueError(f"type {kind!r} is not one of {', '.join(native.MESSAGE_TYPES)}")
    as_native = msgspec.structs.replace(envelope, dialect=native.NAME, kind=kind, body=message)
    normalised = native.normalise(as_native)
    events = tuple(msgspec.structs.replace(e, dialect=NAME) for e in normalised.events)
    return msgspec.structs.replace(normalised, events=events)
