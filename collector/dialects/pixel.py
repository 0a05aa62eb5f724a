"""The pixel dialect: ``GET /p.gif``, for ``<noscript>``, e-mail opens and the snippet's fallback.

The query string carries the write key (``k``) and either plain fields (``t``
type, default ``page``; ``e`` event name; ``u`` url; ``r`` referrer; ``ti``
title; ``a`` anonymousId; ``uid`` userId; ``m`` messageId) or ``d``, JSON: one
native message, or a whole native batch body as POSTed to ``/v1/batch``
(``{"writeKey", "sentAt", "batch": [...]}``: an object with a ``batch`` member
is a batch). Without ``k`` the key is the ``writeKey`` in ``d``.

A batch is validated here, all or nothing like ``/v1/batch``, and enqueued as one
envelope per message (kind: the message's type, body: the message, ``sent_at``:
the batch's ``sentAt``). Everything else is enqueued as its query parameters
(kind ``pixel``) and mapped by the worker. Either way the events are stored with
dialect ``pixel``; the mapping is the native dialect's: a pixel message IS a
native message.

An image request carries no ``Origin``, but a page's carries a ``Referer`` (as its
referrer policy allows): when the Referer names an http(s) or extension origin,
the product's allowed origins apply to it as to ``Origin`` elsewhere. Without a
Referer (e-mail clients, image proxies, ``no-referrer`` pages) there is no origin
to check.

The answer is a 1x1 GIF that is never cached: an image tag must not break. What
cannot be used is counted (``sightline_events_rejected``): a bad or missing key,
a refused origin, an oversized query (nothing enqueued); an invalid batch is also
enqueued as its query parameters when the key names a product, so the worker
dead-letters it with the reason, as any other unusable input.

One exception: when the queue is away (503), a request that carried ``d`` gets
its 503 (``Retry-After``, ``no-store``) as plain text, no image, so that the
snippet's ``Image`` fires ``error`` and it keeps the messages to retry (browsers
fire ``load`` for any decodable image, whatever the status). Without ``d`` (an
``<img>`` in an e-mail or ``<noscript>``, which nobody retries) the 503 is a GIF.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from collector.auth import authorize
from collector.dialects import native
from collector.envelope import Envelope
from collector.errors import ClientError, QueueUnavailable
from collector.intake import Payload, accept
from collector.metrics import Metrics
from sightline.model import Normalised
from sightline.origins import origin_of

NAME = "pixel"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Well under what uvicorn parses (httptools: a URL under 64 KiB; h11: a request head
# under 16 KiB), and what proxies and CDNs commonly pass (8 KB request lines).
MAX_QUERY = 8 * 1024
PLAIN_FIELDS = {"e": "event", "a": "anonymousId", "uid": "userId", "m": "messageId"}
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}
_json = msgspec.json.Encoder()


def _gif(status: int = 200, **headers: str) -> Response:
    return Response(
        GIF, status_code=status, media_type="image/gif", headers={**NO_STORE, **headers}
    )


def _queue_unavailable(with_data: bool) -> Response:
    if not with_data:  # not stored: say so, with an image that does not break
        return _gif(503, **{"Retry-After": str(QueueUnavailable.retry_after)})
    return PlainTextResponse(
        "queue unavailable",
        status_code=503,
        headers={**NO_STORE, "Retry-After": str(QueueUnavailable.retry_after)},
    )


def _loads(text: str | None) -> Any:
    """``d`` as JSON, or ``None`` when it is absent or not JSON (the worker says why)."""
    if text is None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def _is_batch(data: Any) -> bool:
    return isinstance(data, dict) and "batch" in data


def _write_key_of(data: Any) -> str | None:
    key = data.get("writeKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def _payloads(
    params: dict[str, str], data: Any, metrics: Metrics
) -> tuple[list[Payload], datetime | None]:
    """A valid batch's messages, or the query parameters for the worker to map."""
    if _is_batch(data):
        try:
            wire, items = native.decode_batch(params["d"].encode())
        except ClientError:
            metrics.count_rejected(NAME, "invalid_batch")
        else:
            return [Payload(kind, item) for kind, item in items], wire.sentAt
    return [Payload(NAME, msgspec.Raw(_json.encode(params)))], None


async def track_pixel(request: Request) -> Response:
    metrics: Metrics = request.state.metrics
    if len(request.url.query) > MAX_QUERY:
        metrics.count_rejected(NAME, "too_large")
        return _gif()
    params = dict(request.query_params)
    key = params.pop("k", None)
    data = _loads(params.get("d"))
    try:
        grant = await authorize(
            request.state.directory,
            key or _write_key_of(data),
            origin=origin_of(request.headers.get("referer")),
        )
    except ClientError as exc:
        metrics.count_rejected(NAME, f"auth_{exc.status}")
        return _gif()
    payloads, sent_at = _payloads(params, data, metrics)
    try:
        await accept(
            request, dialect=NAME, product_id=grant.product.id, payloads=payloads, sent_at=sent_at
        )
    except QueueUnavailable:
        return _queue_unavailable("d" in params)
    return _gif()


# -- mapping to the canonical model (worker side, pure) --------------------------


def message_of(params: dict[str, Any]) -> dict[str, Any]:
    """The native message a pixel's query string stands for."""
    if "d" in params:
        decoded = msgspec.json.decode(params["d"])
        if not isinstance(decoded, dict):
            raise ValueError("d must be a JSON object")
        if _is_batch(decoded):
            raise ValueError(_batch_refusal(params["d"]))
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


def _batch_refusal(text: str) -> str:
    """Why the collector did not split a batch in ``d`` into its messages."""
    try:
        native.decode_batch(text.encode())
    except ClientError as exc:
        return f"{exc.message}: " + "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
    return "a batch in d must be split into its messages by the collector"


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind in native.MESSAGE_TYPES:  # one message of a batch the collector validated
        return _as_pixel(native.normalise(msgspec.structs.replace(envelope, dialect=native.NAME)))
    if envelope.kind != NAME:
        raise ValueError(
            f"a pixel envelope holds query parameters or a message, not {envelope.kind!r}"
        )
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
    return _as_pixel(native.normalise(as_native))


def _as_pixel(normalised: Normalised) -> Normalised:
    events = tuple(msgspec.structs.replace(e, dialect=NAME) for e in normalised.events)
    return msgspec.structs.replace(normalised, events=events)
