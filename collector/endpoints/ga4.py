"""GA4's Measurement Protocol: ``POST /mp/collect``, ``POST /debug/mp/collect`` (dialect ga4).

``measurement_id`` (or ``firebase_app_id``) in the query names the product: its write
key or a GA4 measurement id the product registered; ``api_secret`` must be that
product's server key. Unknown, missing or mismatched: 401, as for every other key.

``/mp/collect`` answers 204 once the measurement is in Redis, and a 400 naming every
failing field otherwise (GA4 itself answers 2xx and drops it: see the dialect's
docstring). ``/debug/mp/collect`` is GA4's validation server: 200 with
``{"validationMessages": [...]}``, empty when the measurement is valid, never stored. It
is declared here, so it is tried before the generic ``/debug`` mount.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize_site
from collector.bodies import read_body
from collector.directory import Grant, KeyKind, ProductDirectory
from collector.intake import Payload, accept
from collector.routing import INGEST_ERRORS, Endpoint
from sightline.dialects import ga4, ga4_validation
from sightline.errors import InvalidInput, Unauthorized

_json = msgspec.json.Encoder()


async def _authorize(request: Request) -> Grant:
    directory: ProductDirectory = request.state.directory
    query = request.query_params
    stream = query.get("measurement_id") or query.get("firebase_app_id")
    grant = await authorize_site(directory, "ga4", stream, origin=request.headers.get("origin"))
    secret = query.get("api_secret")
    if not secret:
        raise Unauthorized("no api_secret: send the product's server key as api_secret")
    owner = await directory.resolve(secret)
    if owner is None or owner.kind is not KeyKind.SERVER or owner.product.id != grant.product.id:
        raise Unauthorized("api_secret is not the server key of the measurement's product")
    return grant


async def collect(request: Request) -> Response:
    raw = await read_body(request, ga4.MAX_BODY_BYTES)
    ga4_validation.validate(raw, datetime.now(UTC))
    grant = await _authorize(request)
    await accept(
        request,
        dialect=ga4.NAME,
        product_id=grant.product.id,
        key=KeyKind.SERVER,  # the api_secret is the product's server key (_authorize)
        payloads=[Payload(ga4.KIND, msgspec.Raw(raw))],
    )
    return Response(status_code=204)


async def validate_only(request: Request) -> Response:
    raw = await read_body(request, ga4.MAX_BODY_BYTES)
    await _authorize(request)
    try:
        measurement = ga4_validation.decode_measurement(raw)
    except InvalidInput as exc:  # not JSON, or a field of the wrong type
        found = [
            ga4_validation.ValidationMessage(e.field, e.reason, "VALUE_INVALID") for e in exc.errors
        ]
    else:
        found = ga4_validation.messages(measurement, datetime.now(UTC))
    answer = ga4_validation.ValidationAnswer(validationMessages=found)
    return Response(_json.encode(answer), media_type="application/json")


_PARAMETERS = tuple(
    {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
    for name, what in (
        ("measurement_id", "the product's write key, or a GA4 measurement id it registered"),
        ("firebase_app_id", "instead of measurement_id, for app streams"),
        ("api_secret", "the product's server key"),
    )
)

ENDPOINTS = (
    Endpoint(
        "/mp/collect",
        ("POST",),
        collect,
        "ga4.collect",
        "GA4 Measurement Protocol: send events",
        key=KeyKind.SERVER,
        description=(
            "204 once stored; 400 names every failing field with GA4's validation code "
            "(GA4 itself answers 2xx to everything: use /debug/mp/collect to see its messages)."
        ),
        request=ga4.Measurement,
        responses={204: None, **INGEST_ERRORS},
        parameters=_PARAMETERS,
    ),
    Endpoint(
        "/debug/mp/collect",
        ("POST",),
        validate_only,
        "ga4.validate",
        "GA4 Measurement Protocol validation server: validate events, store nothing",
        key=KeyKind.SERVER,
        request=ga4.Measurement,
        responses={200: ga4_validation.ValidationAnswer, **INGEST_ERRORS},
        parameters=_PARAMETERS,
    ),
)
