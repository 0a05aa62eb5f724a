"""Snowplow's collector paths (``sightline.dialects.snowplow``).

- ``POST /com.snowplowanalytics.snowplow/tp2``: a ``payload_data`` document. ``200 ok``
  (text, as Snowplow's collector answers). Each event is validated on its own: the
  valid ones are stored, the invalid ones dead-lettered with the reason (Snowplow's
  "failed events"); a body that is not ``payload_data``, or one of which no event is
  valid, is a 400 naming every failing field, and nothing is stored.
- ``GET /i`` and ``GET /ice.png``: one event in the query string. Always a 1x1 GIF,
  never cached (as Snowplow's); the status says what happened (200 stored, 400 invalid,
  401 unknown app id, 403 refused origin, 413 query too long, 503 queue away): trackers
  read it, an ``<img>`` still gets its image.
- ``OPTIONS``: the shared CORS middleware (the browser tracker POSTs with credentials
  and may send ``SP-Anonymous``, which the preflight grants).

The product is the events' ``aid`` (app id): the product's write key, or a Snowplow
app id the product registered (``collector.auth.authorize_site``). Snowplow's collector
knows no app ids and accepts everything; here an unknown or missing ``aid`` is refused
(401, a refused origin 403) and nothing is stored: its trackers do not retry either.
Every ``aid`` in a POST must name a product; events are stored under their own.

``SP-Anonymous`` (any value): the envelopes carry no address, the ``ip`` field and the
network user id (``nuid``/``tnuid``) are dropped. Otherwise the ``sp`` cookie, which a
browser keeps from a Snowplow collector that served this host, is the network user id
of events that carry none. Unlike Snowplow's collector, this one never sets that
cookie: the browser tracker's own ``duid`` is the anonymous id.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from collector.auth import authorize_site
from collector.bodies import read_body
from collector.debug import is_debug
from collector.directory import Grant, KeyKind
from collector.endpoints.pixel import gif
from collector.intake import Payload, accept
from collector.metrics import Metrics
from collector.routing import INGEST_ERRORS, Endpoint
from sightline.dialects import pixel, snowplow
from sightline.errors import (
    ClientError,
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    QueueUnavailable,
)
from sightline.origins import origin_of

TP2 = "/com.snowplowanalytics.snowplow/tp2"
NETWORK_COOKIE = "sp"
_json = msgspec.json.Encoder()


class _Rejected(msgspec.Struct, frozen=True):
    errors: tuple[FieldError, ...]
    event: dict[str, str]


def _kind(request: Request) -> str:
    anonymous = "sp-anonymous" in request.headers
    return snowplow.ANONYMOUS_EVENT if anonymous else snowplow.EVENT


def _with_cookie(request: Request, fields: dict[str, str]) -> dict[str, str]:
    """The event with the ``sp`` cookie as its network user id, when it names none."""
    cookie = request.cookies.get(NETWORK_COOKIE)
    if not cookie or "sp-anonymous" in request.headers or "nuid" in fields or "tnuid" in fields:
        return fields
    return {**fields, "nuid": cookie}


async def _grant(request: Request, aid: str | None, field: str) -> Grant:
    origin = request.headers.get("origin") or origin_of(request.headers.get("referer"))
    try:
        return await authorize_site(request.state.directory, snowplow.NAME, aid, origin=origin)
    except ClientError as exc:
        raise type(exc)(exc.message, [FieldError(field, exc.message)], status=exc.status) from None


async def track_post(request: Request) -> Response:
    raw = await read_body(request, snowplow.MAX_BODY_BYTES)
    document = snowplow.validate_payload(raw)
    kind = _kind(request)
    items: list[tuple[str | None, Payload]] = []
    errors: list[FieldError] = []
    for index, event in enumerate(document.data):
        fields = _with_cookie(request, snowplow.as_text(event))
        try:
            snowplow.parse_event(fields, f"data[{index}].")
        except InvalidInput as exc:
            errors += exc.errors
            body = _json.encode(_Rejected(exc.errors, fields))
            items.append((fields.get("aid"), Payload(snowplow.REJECTED, msgspec.Raw(body))))
        else:
            items.append((fields.get("aid"), Payload(kind, msgspec.Raw(_json.encode(fields)))))
    if all(p.kind == snowplow.REJECTED for _, p in items):
        raise InvalidInput("invalid payload_data: no event can be stored", errors)
    by_product: dict[tuple[str, KeyKind], list[Payload]] = {}
    grants: dict[str | None, Grant] = {}
    for index, (aid, payload) in enumerate(items):
        if aid not in grants:
            grants[aid] = await _grant(request, aid, f"data[{index}].aid")
        by_product.setdefault((grants[aid].product.id, grants[aid].kind), []).append(payload)
    for (product_id, key), payloads in by_product.items():
        await accept(
            request,
            dialect=snowplow.NAME,
            product_id=product_id,
            key=key,
            payloads=payloads,
            anonymous=kind == snowplow.ANONYMOUS_EVENT,
        )
    return PlainTextResponse("ok")


async def track_get(request: Request) -> Response:
    metrics: Metrics = request.state.metrics
    try:
        if len(request.url.query) > pixel.MAX_QUERY:
            raise PayloadTooLarge(f"query string longer than {pixel.MAX_QUERY} bytes")
        fields = _with_cookie(request, dict(request.query_params))
        snowplow.parse_event(fields)
        grant = await _grant(request, fields.get("aid"), "aid")
        kind = _kind(request)
        await accept(
            request,
            dialect=snowplow.NAME,
            product_id=grant.product.id,
            key=grant.kind,
            payloads=[Payload(kind, msgspec.Raw(_json.encode(fields)))],
            anonymous=kind == snowplow.ANONYMOUS_EVENT,
        )
    except ClientError as exc:
        if is_debug(request):
            raise  # a debug request shows why, where an image tag gets its image
        metrics.count_rejected(snowplow.NAME, f"status_{exc.status}")
        return gif(exc.status)
    except QueueUnavailable:
        return gif(503, **{"Retry-After": str(QueueUnavailable.retry_after)})
    return gif()


_PARAMETERS = tuple(
    {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
    for name, what in (
        ("aid", "app id: the product's write key or a registered Snowplow app id"),
        ("e", "event: pv, pp, se, ue, tr, ti"),
        ("eid", "event id (deduplicates)"),
        ("uid", "user id"),
        ("duid", "domain user id (the anonymous id)"),
        ("sid", "session id"),
        ("dtm", "device created time, ms since the epoch"),
        ("stm", "device sent time, ms since the epoch"),
        ("ttm", "true time, ms since the epoch"),
        ("url", "page URL"),
        ("page", "page title"),
        ("refr", "referrer"),
        ("se_ca", "structured event category"),
        ("se_ac", "structured event action (its name)"),
        ("ue_pr", "self-describing event, JSON"),
        ("ue_px", "self-describing event, base64url JSON"),
        ("co", "contexts, JSON"),
        ("cx", "contexts, base64url JSON"),
    )
)
_GET_DESCRIPTION = (
    "One Snowplow tracker-protocol event in the query string. Always a 1x1 GIF, never "
    "cached; the status says what happened: 200 stored, 400 invalid, 401 unknown or "
    "missing `aid`, 403 an origin the product does not allow, 413 a query over 8 KB, "
    "503 (`Retry-After: 1`) the queue is away. `SP-Anonymous`: no address kept."
)


def _pixel(path: str, name: str) -> Endpoint:
    return Endpoint(
        path,
        ("GET",),
        track_get,
        f"snowplow.{name}",
        "Snowplow: one event in the query string; a 1x1 GIF",
        key=KeyKind.WRITE,
        description=_GET_DESCRIPTION,
        responses={status: None for status in (200, 400, 401, 403, 413, 503)},
        parameters=_PARAMETERS,
        media="image/gif",
    )


ENDPOINTS = (
    Endpoint(
        TP2,
        ("POST",),
        track_post,
        "snowplow.tp2",
        "Snowplow: a payload_data batch of tracker-protocol events",
        key=KeyKind.WRITE,
        request=snowplow.PayloadData,
        responses={200: None, **INGEST_ERRORS},
        media="text/plain",
        description=(
            "Each event's `aid` names its product (the write key or a registered Snowplow "
            "app id): one that names none is a 401 (403 for a refused origin) and nothing "
            "is stored. Events are validated one by one: the valid ones are stored, the "
            "invalid ones dead-lettered with their reason, and the answer is `200 ok`; a "
            "body that is not payload_data, or with no valid event, is a 400. "
            "`SP-Anonymous`: no address or network user id kept."
        ),
    ),
    _pixel("/i", "pixel"),
    _pixel("/ice.png", "ice"),
)
