"""Segment's tracking API: ``/v1/<type>`` and ``/v1/batch`` (``sightline.dialects.native``).

Also analytics-next's short paths (``/v1/t|p|s|i|g|a|b``, fixed in its code), which
it posts as ``text/plain`` JSON; every body may be gzip or deflate compressed
(``collector.bodies``). RudderStack's extra paths are in ``collector.endpoints.rudderstack``.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.answers import FixedAnswer
from collector.auth import authorize, basic_auth_user
from collector.bodies import read_body
from collector.directory import KeyKind
from collector.identity import identify_batch, identify_message, set_cookie, wants_identity
from collector.intake import Payload, accept
from collector.routing import INGEST_ERRORS, Endpoint, Handler
from sightline.dialects import native, native_batch
from sightline.errors import InvalidInput

SUCCESS = b'{"success":true}'
_success = FixedAnswer(SUCCESS, media_type="application/json")
SHORT_PATHS = {
    "t": "track",
    "p": "page",
    "s": "screen",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "b": "batch",
}
"""analytics-next's paths (``/v1/<letter>``) for each native endpoint."""
_json = msgspec.json.Encoder()


class NativeSuccess(msgspec.Struct, kw_only=True):
    success: bool


class RejectedMessage(msgspec.Struct, kw_only=True):
    """One failing field of a batch's message that was not stored."""

    index: int
    """The message's place in ``batch``."""
    field: str
    reason: str


class BatchSuccess(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``{"success": true}``, or, when some messages were invalid, how many were stored and
    why the others were not (they are also dead-lettered with that reason)."""

    success: bool
    accepted: int | None = None
    rejected: list[RejectedMessage] | None = None


def _header_key(request: Request) -> str | None:
    return basic_auth_user(request) or request.headers.get("x-write-key")


def _message_endpoint(kind: str) -> Handler:
    async def endpoint(request: Request) -> Response:
        raw = await read_body(request, native.MAX_MESSAGE_BYTES)
        origin = request.headers.get("origin")
        message: native.AnyMessage | None
        try:
            message = native.validate(kind, raw)
        except InvalidInput:
            # A cookieless product's visitors send no id: the collector gives them one.
            if not await wants_identity(
                request, _header_key(request) or native_batch.write_key_of(raw)
            ):
                raise
            message = None
        grant = await authorize(
            request.state.directory,
            _header_key(request)
            or (message.writeKey if message is not None else native_batch.write_key_of(raw)),
            origin=origin,
        )
        raw, message, remembered = await identify_message(
            request, grant.product, kind, raw, message, origin
        )
        await accept(
            request,
            dialect=native.NAME,
            product_id=grant.product.id,
            key=grant.kind,
            payloads=[Payload(kind, msgspec.Raw(raw))],
            sent_at=message.sentAt,
        )
        answer = _success()
        if remembered is not None:
            set_cookie(request, answer, remembered)
        return answer

    endpoint.__name__ = endpoint.__qualname__ = kind
    endpoint.__doc__ = f"``POST /v1/{kind}``: one {kind} message."
    return endpoint


def batch_payloads(parsed: native_batch.Batch) -> list[Payload]:
    """The envelopes' payloads of a batch: its valid messages, then its rejected ones (which
    the worker dead-letters with the reason recorded here)."""
    payloads = [Payload(kind, item) for kind, item in parsed.items]
    payloads += [Payload(native.REJECTED, native_batch.rejected_body(r)) for r in parsed.rejected]
    return payloads


def batch_answer(parsed: native_batch.Batch) -> Response:
    if not parsed.rejected:
        return _success()
    answer = BatchSuccess(
        success=True,
        accepted=len(parsed.items),
        rejected=[
            RejectedMessage(index=r.index, field=e.field, reason=e.reason)
            for r in parsed.rejected
            for e in r.errors
        ],
    )
    return Response(_json.encode(answer), media_type="application/json")


async def accept_batch(request: Request, key: str | None = None) -> Response:
    """Read, validate, authorise and accept a batch body; ``key`` is a key found elsewhere
    than in the headers (RudderStack's beacon puts it in the query string). The product's
    identity mode applies (``collector.identity``)."""
    raw = await read_body(request, native.MAX_BATCH_BYTES)
    origin = request.headers.get("origin")
    parsed: native_batch.Batch | None
    refused: InvalidInput | None = None
    try:
        parsed = native_batch.decode_batch(raw)
    except InvalidInput as exc:
        # A cookieless product's visitors send no id: the collector gives them one.
        key = _header_key(request) or key or native_batch.write_key_of(raw)
        if not await wants_identity(request, key):
            raise
        parsed, wire_key, refused = None, None, exc
    else:
        wire_key = parsed.wire.writeKey
    grant = await authorize(
        request.state.directory, _header_key(request) or key or wire_key, origin=origin
    )
    parsed, remembered = await identify_batch(request, grant.product, raw, parsed, origin)
    if parsed is None:  # the product left cookieless mode meanwhile
        raise refused or InvalidInput("invalid batch")
    await accept(
        request,
        dialect=native.NAME,
        product_id=grant.product.id,
        key=grant.kind,
        payloads=batch_payloads(parsed),
        sent_at=parsed.wire.sentAt,
    )
    answer = batch_answer(parsed)
    if remembered is not None:
        set_cookie(request, answer, remembered)
    return answer


async def batch(request: Request) -> Response:
    return await accept_batch(request)


BATCH_DESCRIPTION = (
    "Messages are validated one by one: the valid ones are stored; when some are invalid "
    "the answer is still 200, with `accepted` (how many were stored) and `rejected` (each "
    "failing field of each refused message, by its `index` in `batch`), and the refused "
    "messages are dead-lettered with that reason. A body that is not a batch, an empty "
    "batch, or one of which no message is valid is refused whole (400, or 413 when a "
    "message is over 32 KB) and nothing is stored. Bodies may be gzip or deflate compressed."
)


def _endpoint(
    kind: str, handler: Handler, schema: object, summary: str, path: str | None = None
) -> Endpoint:
    is_batch = kind == "batch"
    return Endpoint(
        path or f"/v1/{kind}",
        ("POST",),
        handler,
        f"native.{kind}" if path is None else f"native.{kind}_short",
        summary,
        key=KeyKind.WRITE,
        schemes=("basicAuth", "writeKeyHeader"),
        key_in_body=True,  # writeKey may travel in the body
        request=schema,
        responses={200: BatchSuccess if is_batch else NativeSuccess, **INGEST_ERRORS},
        description=BATCH_DESCRIPTION if is_batch else "",
    )


MESSAGE_KINDS = ("track", "page", "screen", "identify", "group", "alias")
_HANDLERS: dict[str, Handler] = {
    "batch": batch,
    **{kind: _message_endpoint(kind) for kind in MESSAGE_KINDS},
}
_SCHEMAS: dict[str, object] = {"batch": native.BatchWire, **native.MESSAGE_TYPES}

# The ingest paths carry the traffic: the route table puts them first.
ENDPOINTS = (
    _endpoint("batch", batch, native.BatchWire, "Segment-style batch of messages"),
    *(
        _endpoint(kind, _HANDLERS[kind], _SCHEMAS[kind], f"Segment-style {kind} message")
        for kind in MESSAGE_KINDS
    ),
    *(
        _endpoint(
            kind,
            _HANDLERS[kind],
            _SCHEMAS[kind],
            f"analytics-next's short path for /v1/{kind} (text/plain JSON accepted)",
            path=f"/v1/{letter}",
        )
        for letter, kind in SHORT_PATHS.items()
    ),
)
