"""Segment's tracking API: ``/v1/<type>`` and ``/v1/batch`` (``sightline.dialects.native``)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, basic_auth_user
from collector.bodies import read_body
from collector.directory import KeyKind
from collector.intake import Payload, accept
from collector.routing import INGEST_ERRORS, Endpoint, Handler
from sightline.dialects import native

SUCCESS = b'{"success":true}'


class NativeSuccess(msgspec.Struct, kw_only=True):
    success: bool


def _header_key(request: Request) -> str | None:
    return basic_auth_user(request) or request.headers.get("x-write-key")


def _message_endpoint(kind: str) -> Handler:
    async def endpoint(request: Request) -> Response:
        raw = await read_body(request, native.MAX_MESSAGE_BYTES)
        message = native.validate(kind, raw)
        grant = await authorize(
            request.state.directory,
            _header_key(request) or message.writeKey,
            origin=request.headers.get("origin"),
        )
        await accept(
            request,
            dialect=native.NAME,
            product_id=grant.product.id,
            payloads=[Payload(kind, msgspec.Raw(raw))],
            sent_at=message.sentAt,
        )
        return Response(SUCCESS, media_type="application/json")

    endpoint.__name__ = endpoint.__qualname__ = kind
    endpoint.__doc__ = f"``POST /v1/{kind}``: one {kind} message."
    return endpoint


async def batch(request: Request) -> Response:
    raw = await read_body(request, native.MAX_BATCH_BYTES)
    wire, items = native.decode_batch(raw)
    grant = await authorize(
        request.state.directory,
        _header_key(request) or wire.writeKey,
        origin=request.headers.get("origin"),
    )
    await accept(
        request,
        dialect=native.NAME,
        product_id=grant.product.id,
        payloads=[Payload(kind, item) for kind, item in items],
        sent_at=wire.sentAt,
    )
    return Response(SUCCESS, media_type="application/json")


def _endpoint(kind: str, handler: Handler, schema: object, summary: str) -> Endpoint:
    return Endpoint(
        f"/v1/{kind}",
        ("POST",),
        handler,
        f"native.{kind}",
        summary,
        key=KeyKind.WRITE,
        schemes=("basicAuth", "writeKeyHeader"),
        key_in_body=True,  # writeKey may travel in the body
        request=schema,
        responses={200: NativeSuccess, **INGEST_ERRORS},
    )


# The ingest paths carry the traffic: the route table puts them first.
ENDPOINTS = (
    _endpoint("batch", batch, native.BatchWire, "Segment-style batch of messages"),
    *(
        _endpoint(
            kind,
            _message_endpoint(kind),
            native.MESSAGE_TYPES[kind],
            f"Segment-style {kind} message",
        )
        for kind in ("track", "page", "screen", "identify", "group", "alias")
    ),
)
