"""Gameball's ``POST /integrations/event`` (``sightline.dialects.gameball``)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize
from collector.bodies import read_body
from collector.directory import KeyKind
from collector.intake import Payload, accept
from collector.routing import INGEST_ERRORS, Endpoint
from sightline.dialects import gameball

OK = b"{}"


class Empty(msgspec.Struct):
    """An empty JSON object."""


async def track_event(request: Request) -> Response:
    raw = await read_body(request, gameball.MAX_BODY_BYTES)
    gameball.validate(raw)
    grant = await authorize(request.state.directory, request.headers.get("apikey"))
    # Channel merging is read when the call is accepted: the envelope's kind records it.
    kind = gameball.KIND_MERGING if grant.product.channel_merging else gameball.KIND
    await accept(
        request,
        dialect=gameball.NAME,
        product_id=grant.product.id,
        key=grant.kind,
        payloads=[Payload(kind, msgspec.Raw(raw))],
    )
    return Response(OK, media_type="application/json")


ENDPOINTS = (
    Endpoint(
        "/integrations/event",
        ("POST",),
        track_event,
        "gameball.track_event",
        "Gameball: track a player's events",
        key=KeyKind.WRITE,
        schemes=("gameballKey",),
        request=gameball.GameballEventCall,
        responses={200: Empty, **INGEST_ERRORS},
    ),
)
