"""RudderStack's extra data-plane paths, in the native dialect (``sightline.dialects.native``).

RudderStack's SDKs speak Segment's messages; besides ``/v1/<type>`` and ``/v1/batch``
(``collector.endpoints.native``) they use:

- ``POST /v1/import``: a batch, as ``/v1/batch``;
- ``POST /beacon/v1/batch?writeKey=<key>``: the browser SDK's ``sendBeacon`` batch,
  ``text/plain`` JSON ``{"batch": [...], "sentAt"}``, the key in the query string
  (a beacon cannot set headers);
- ``GET /pixel/v1/track`` and ``GET /pixel/v1/page``: RudderStack's pixel API (its AMP
  SDK and image tags). The query string is the message, dot-separated names giving its
  nesting: ``writeKey``, ``anonymousId``, ``userId``, ``event`` (track), ``name``
  (page), ``messageId``, ``timestamp``, ``context.page.url``, ``context.userAgent``,
  ``properties.<key>`` ... (values stay strings). The answer is always a 1x1 GIF that
  is never cached, as ``/p.gif``'s; what cannot be used is counted
  (``sightline_events_rejected``) and, with a valid key, dead-lettered with the reason.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize
from collector.directory import KeyKind
from collector.endpoints.native import BATCH_DESCRIPTION, BatchSuccess, accept_batch
from collector.endpoints.pixel import gif
from collector.intake import Payload, accept
from collector.metrics import Metrics
from collector.routing import INGEST_ERRORS, Endpoint, Handler
from sightline.dialects import native, native_batch, pixel
from sightline.errors import ClientError, FieldError, QueueUnavailable
from sightline.origins import origin_of

_json = msgspec.json.Encoder()
MAX_DEPTH = 4
"""How deep a dotted query name may nest (``context.page.url`` is 3)."""


async def import_batch(request: Request) -> Response:
    return await accept_batch(request)


async def beacon_batch(request: Request) -> Response:
    return await accept_batch(request, key=request.query_params.get("writeKey"))


def message_of(kind: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    """The native message a RudderStack pixel's query string stands for."""
    message: dict[str, Any] = {}
    for name, value in params:
        if name == "writeKey" or not name:
            continue
        path = name.split(".")
        if len(path) > MAX_DEPTH or "" in path:
            continue
        node = message
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    message["type"] = kind
    return message


def _pixel_endpoint(kind: str) -> Handler:
    async def endpoint(request: Request) -> Response:
        metrics: Metrics = request.state.metrics
        if len(request.url.query) > pixel.MAX_QUERY:
            metrics.count_rejected(native.NAME, "too_large")
            return gif()
        params = request.query_params.multi_items()
        try:
            grant = await authorize(
                request.state.directory,
                request.query_params.get("writeKey"),
                origin=origin_of(request.headers.get("referer")),
            )
        except ClientError as exc:
            metrics.count_rejected(native.NAME, f"auth_{exc.status}")
            return gif()
        raw = _json.encode(message_of(kind, params))
        try:
            message = native.validate(kind, raw)
        except ClientError as exc:
            metrics.count_rejected(native.NAME, "invalid_pixel")
            why = exc.errors or (FieldError("$", exc.message),)
            rejection = native_batch.Rejection(0, why, msgspec.Raw(raw))
            payload = Payload(native.REJECTED, native_batch.rejected_body(rejection))
            sent_at = None
        else:
            payload = Payload(kind, msgspec.Raw(raw))
            sent_at = message.sentAt
        try:
            await accept(
                request,
                dialect=native.NAME,
                product_id=grant.product.id,
                key=grant.kind,
                payloads=[payload],
                sent_at=sent_at,
            )
        except QueueUnavailable:
            return gif(503, **{"Retry-After": str(QueueUnavailable.retry_after)})
        return gif()

    endpoint.__name__ = endpoint.__qualname__ = f"pixel_{kind}"
    endpoint.__doc__ = f"``GET /pixel/v1/{kind}``: RudderStack's pixel API, a {kind} message."
    return endpoint


def _batch(path: str, handler: Handler, name: str, summary: str, **extra: Any) -> Endpoint:
    return Endpoint(
        path,
        ("POST",),
        handler,
        f"native.{name}",
        summary,
        key=KeyKind.WRITE,
        schemes=("basicAuth", "writeKeyHeader"),
        key_in_body=True,
        request=native.BatchWire,
        responses={200: BatchSuccess, **INGEST_ERRORS},
        description=BATCH_DESCRIPTION,
        **extra,
    )


_WRITE_KEY_PARAMETER: dict[str, Any] = {
    "name": "writeKey",
    "in": "query",
    "schema": {"type": "string"},
    "description": "the write key (a beacon cannot send headers)",
}
_PIXEL_PARAMETERS: tuple[dict[str, Any], ...] = (
    _WRITE_KEY_PARAMETER | {"required": True},
    *(
        {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
        for name, what in (
            ("anonymousId", "anonymousId (this or userId)"),
            ("userId", "userId"),
            ("event", "event name (track)"),
            ("name", "page name (page)"),
            ("messageId", "messageId (deduplicates)"),
            ("context.page.url", "any dot-separated name nests: context.*, properties.*"),
        )
    ),
)


def _pixel(kind: str) -> Endpoint:
    return Endpoint(
        f"/pixel/v1/{kind}",
        ("GET",),
        _pixel_endpoint(kind),
        f"native.pixel_{kind}",
        f"RudderStack's pixel API: a {kind} message from the query string; always a 1x1 GIF",
        key=KeyKind.WRITE,
        description=(
            "The query string is the message, dot-separated names giving its nesting "
            "(`context.page.url`, `properties.plan`); values stay strings. Always a 1x1 GIF, "
            "never cached; what cannot be used is counted and, with a valid key, "
            "dead-lettered with the reason. 503 (a GIF, `Retry-After: 1`) when the queue is "
            "away."
        ),
        responses={200: None, 503: None},
        parameters=_PIXEL_PARAMETERS,
        media="image/gif",
    )


ENDPOINTS = (
    _batch("/v1/import", import_batch, "import", "RudderStack's import: a batch, as /v1/batch"),
    _batch(
        "/beacon/v1/batch",
        beacon_batch,
        "beacon_batch",
        "RudderStack's sendBeacon batch (text/plain JSON, key in the query string)",
        parameters=(_WRITE_KEY_PARAMETER,),
    ),
    _pixel("track"),
    _pixel("page"),
)
