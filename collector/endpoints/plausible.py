"""Plausible's ``POST /api/event`` (``sightline.dialects.plausible``).

The site (``d``) names the product: a domain the product registered for ``plausible``
(``sightline products ids``), or its write key. A comma-separated ``d`` counts the
event for each product it names, once per product. A site that names no product is
answered as Plausible answers it: ``202 ok`` with ``x-plausible-dropped`` (how many
sites were dropped), nothing stored; so is a site whose product does not allow the
page's origin. Under ``/debug`` the refusal itself is the answer.

The visitor id is derived here, where the client's address and agent are known
(``sightline.cookieless``, with the day's salt from ``collector.salts``).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize_site
from collector.bodies import read_body
from collector.debug import DebugAnswer, is_debug
from collector.directory import Grant, KeyKind
from collector.intake import Payload, accept
from collector.metrics import Metrics
from collector.routing import Endpoint, ErrorBody
from collector.salts import daily_salts
from sightline.cookieless import cookieless_visitor_id
from sightline.dialects import plausible
from sightline.envelope import Envelope
from sightline.errors import ClientError

OK = b"ok"
DROPPED = "x-plausible-dropped"
_json = msgspec.json.Encoder()


async def event(request: Request) -> Response:
    raw = await read_body(request, plausible.MAX_BODY_BYTES)
    wire = plausible.validate(raw)
    metrics: Metrics = request.state.metrics
    origin = request.headers.get("origin")
    grants: dict[str, Grant] = {}
    refusals: list[ClientError] = []
    for domain in wire.domains():
        try:
            grant = await authorize_site(
                request.state.directory, plausible.NAME, domain, origin=origin
            )
        except ClientError as refusal:
            refusals.append(refusal)
            metrics.count_rejected(plausible.NAME, f"auth_{refusal.status}")
            continue
        grants.setdefault(grant.product.id, grant)
    if not grants and is_debug(request):
        raise refusals[0]
    if grants:
        await _accept(request, raw, list(grants.values()))
    headers = {DROPPED: str(len(refusals))} if refusals else None
    return Response(OK, status_code=202, media_type="text/plain", headers=headers)


async def _accept(request: Request, raw: bytes, grants: list[Grant]) -> None:
    """One envelope per product, each with the visitor id of its product."""
    client = request.client
    ip = client.host if client else None
    agent = request.headers.get("user-agent")
    salt = await daily_salts(request).today()
    shown: list[Envelope] = []
    for grant in grants:
        product_id = grant.product.id
        visitor = cookieless_visitor_id(salt, product_id, ip, agent)
        body = _json.encode({"visitor": visitor, "event": msgspec.Raw(raw)})
        try:
            await accept(
                request,
                dialect=plausible.NAME,
                product_id=product_id,
                key=grant.kind,
                payloads=[Payload(plausible.KIND, msgspec.Raw(body))],
            )
        except DebugAnswer as answer:  # a debug request: show every product's envelope
            shown += answer.envelopes
    if shown:
        raise DebugAnswer(shown)


ENDPOINTS = (
    Endpoint(
        "/api/event",
        ("POST",),
        event,
        "plausible.event",
        "Plausible: record one event (page view, engagement or custom event)",
        key=KeyKind.WRITE,
        key_in_body=True,
        request=plausible.PlausibleEvent,
        responses={
            202: None,
            400: ErrorBody,
            413: ErrorBody,
            415: ErrorBody,
            429: ErrorBody,
            503: ErrorBody,
        },
        media="text/plain",
        description=(
            "The body is JSON, sent as `text/plain` or `application/json`. `d` (the site, "
            "or a comma-separated list) is a domain the product registered for `plausible`, "
            "or its write key. `202 ok`; a site that names no product (or whose product "
            "does not allow the page's origin) is dropped as Plausible drops it: `202 ok` "
            "with `x-plausible-dropped: <sites dropped>`, nothing stored."
        ),
    ),
)
