"""The pixel dialect: ``GET /p.gif`` (``collector.endpoints.pixel``), for ``<noscript>``,
e-mail opens and the snippet's fallback.

The query string carries the write key (``k``) and either plain fields (``t``
type, default ``page``; ``e`` event name; ``u`` url; ``r`` referrer; ``ti``
title; ``a`` anonymousId; ``uid`` userId; ``m`` messageId) or ``d``, JSON: one
native message, or a whole native batch body as POSTed to ``/v1/batch``
(``{"writeKey", "sentAt", "batch": [...]}``: an object with a ``batch`` member
is a batch). Without ``k`` the key is the ``writeKey`` in ``d``.

A batch is validated here like ``/v1/batch``, message by message, and enqueued as
one envelope per message (kind: the message's type, body: the message, ``sent_at``:
the batch's ``sentAt``); its invalid messages as ``rejected`` envelopes, which the
worker dead-letters with the collector's reason. Everything else is enqueued as its query parameters
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
a refused origin, an oversized query (nothing enqueued); a batch with no valid
message (or not a batch at all) is also
enqueued as its query parameters when the key names a product, so the worker
dead-letters it with the reason, as any other unusable input.

One exception: when the queue is away (503), a request that carried ``d`` gets
its 503 (``Retry-After``, ``no-store``) as plain text, no image, so that the
snippet's ``Image`` fires ``error`` and it keeps the messages to retry (browsers
fire ``load`` for any decodable image, whatever the status). Without ``d`` (an
``<img>`` in an e-mail or ``<noscript>``, which nobody retries) the 503 is a GIF.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sightline.dialects import native, native_batch
from sightline.dialects.base import Dialect
from sightline.dialects.decoding import depth_error
from sightline.dialects.dedup import content_id
from sightline.envelope import Envelope
from sightline.errors import ClientError
from sightline.model import Normalised

NAME = "pixel"
# Well under what uvicorn parses (httptools: a URL under 64 KiB; h11: a request head
# under 16 KiB), and what proxies and CDNs commonly pass (8 KB request lines).
MAX_QUERY = 8 * 1024
PLAIN_FIELDS = {"e": "event", "a": "anonymousId", "uid": "userId", "m": "messageId"}


def is_batch(data: Any) -> bool:
    """Whether ``d`` holds a whole ``/v1/batch`` body (an object with a ``batch`` member)."""
    return isinstance(data, dict) and "batch" in data


# -- mapping to the canonical model (worker side, pure) --------------------------


def message_of(params: dict[str, Any]) -> dict[str, Any]:
    """The native message a pixel's query string stands for."""
    if "d" in params:
        too_deep = depth_error(params["d"].encode(), "d")
        if too_deep is not None:
            raise ValueError(f"{too_deep.field}: {too_deep.reason}")
        decoded = msgspec.json.decode(params["d"])
        if not isinstance(decoded, dict):
            raise ValueError("d must be a JSON object")
        if is_batch(decoded):
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
    # No shared id for anonymous hits: the collector gave this one its visitor's id
    # (``collector.identity``); a hit without any id is dead-lettered.
    return message


def _batch_refusal(text: str) -> str:
    """Why the collector did not split a batch in ``d`` into its messages."""
    try:
        native_batch.decode_batch(text.encode())
    except ClientError as exc:
        return f"{exc.message}: " + "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
    return "a batch in d must be split into its messages by the collector"


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind in native.MESSAGE_TYPES or envelope.kind == native.REJECTED:
        # one message of a batch the collector validated (or refused: dead-lettered)
        return native.normalise(envelope)
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
    if not message.get("messageId"):
        # An image tag has no message id: the same hit again within a minute (a retried
        # request, a mail client fetching twice) is the same event (``dedup``).
        params = msgspec.json.encode(envelope.body, order="sorted").decode()
        message["messageId"] = content_id(
            envelope, [params, envelope.ip, envelope.user_agent], unique=False
        )
    # A pixel message IS a native message; its events keep the envelope's dialect.
    return native.normalise(msgspec.structs.replace(envelope, kind=kind, body=message))


DIALECT = Dialect(NAME, "Tracking pixel", normalise)
