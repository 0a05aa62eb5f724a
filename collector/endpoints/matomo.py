"""Matomo's Tracking HTTP API: ``GET|POST /matomo.php``, ``/piwik.php`` (dialect ``matomo``).

Answers as Matomo does: a tracked request gets a 1x1 GIF that is never cached, or 204
with ``send_image=0``; a bulk body gets ``{"status": "success", "tracked": n, "invalid":
m}`` (with ``invalid_indices`` when ``token_auth`` is the product's server key). A
request that cannot be tracked gets the same media with a 4xx status, as Matomo answers
an unknown site (400): the GIF for an image, and the reason as text with
``send_image=0``; ``/debug/matomo.php`` answers every reason as JSON.

``idsite`` is the product's write key, or a site number the product registered
(``authorize_site(..., "matomo", idsite)``). A GET's ``Origin`` (else the origin of
its ``Referer``, as for the pixel) must be one the product allows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from collector.auth import authorize_site
from collector.bodies import read_body
from collector.debug import is_debug
from collector.directory import Grant, KeyKind, ProductDirectory
from collector.endpoints.pixel import gif
from collector.intake import Payload, accept
from collector.metrics import Metrics
from collector.routing import INGEST_ERRORS, Endpoint, ErrorBody
from sightline.dialects import matomo, matomo_wire
from sightline.errors import ClientError, FieldError, InvalidInput, Unauthorized
from sightline.origins import origin_of

_json = msgspec.json.Encoder()
EMPTY_PAGE = "This is the Matomo tracking endpoint of Sightline: send tracking requests here.\n"


class BulkAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    tracked: int
    invalid: int
    invalid_indices: list[int] | None = None


def _origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if origin is None and request.method == "GET":
        return origin_of(request.headers.get("referer"))
    return origin


async def _authenticated(directory: ProductDirectory, token: str | None, grant: Grant) -> bool:
    """Whether ``token_auth`` is the server key of the product ``idsite`` names."""
    if not token:
        return False
    owner = await directory.resolve(token)
    return (
        owner is not None and owner.kind is KeyKind.SERVER and owner.product.id == grant.product.id
    )


async def _prepare(
    request: Request, params: matomo_wire.Params, token: str | None
) -> tuple[Grant, KeyKind, Payload] | None:
    """The product and payload of one tracking request; ``None``: nothing to track."""
    if not matomo_wire.is_tracked(params):
        return None
    referer = request.headers.get("referer")
    if referer and not params.get("url") and not params.get("urlref"):
        params = params | {"url": referer}  # Matomo's image tracker: the page is the Referer
    directory: ProductDirectory = request.state.directory
    try:
        grant = await authorize_site(
            directory, "matomo", params.get("idsite"), origin=_origin(request)
        )
    except Unauthorized:  # Matomo's UnexpectedWebsiteFoundException: a 400
        reason = "neither a write key nor a Matomo site id a product registered"
        reason = reason if params.get("idsite") else "missing: the site id is required"
        raise InvalidInput("unknown site", [FieldError("idsite", reason)]) from None
    authenticated = await _authenticated(directory, params.get("token_auth") or token, grant)
    checked = matomo_wire.validate(params, now=datetime.now(UTC), authenticated=authenticated)
    key = KeyKind.SERVER if authenticated else grant.kind
    return grant, key, Payload(matomo.KIND, msgspec.Raw(_json.encode(checked)))


def _answer(image: bool, status: int = 200, reason: str = "") -> Response:
    if status < 300:
        return gif() if image else Response(status_code=204)
    if image:
        return gif(status)
    return PlainTextResponse(reason, status_code=status, headers={"Cache-Control": "no-store"})


def _reason(exc: ClientError) -> str:
    return "; ".join([exc.message, *(f"{e.field}: {e.reason}" for e in exc.errors)])


async def _single(request: Request, params: matomo_wire.Params) -> Response:
    image = params.get("send_image") != "0"
    try:
        prepared = await _prepare(request, params, None)
    except ClientError as exc:
        if is_debug(request):
            raise
        metrics: Metrics = request.state.metrics
        metrics.count_rejected(matomo.NAME, f"invalid_{exc.status}")
        return _answer(image, exc.status, _reason(exc))
    if prepared is not None:
        grant, key, payload = prepared
        await accept(
            request, dialect=matomo.NAME, product_id=grant.product.id, key=key, payloads=[payload]
        )
    return _answer(image)


async def _bulk(request: Request, raw: bytes) -> Response:
    bulk = matomo_wire.decode_bulk(raw)
    groups: dict[tuple[str, KeyKind], list[Payload]] = {}
    tracked, invalid, errors = 0, [], []
    for index, item in enumerate(bulk.requests):
        try:
            prepared = await _prepare(request, matomo_wire.request_params(item), bulk.token_auth)
        except ClientError as exc:
            invalid.append(index)
            errors += [FieldError(f"requests[{index}].{e.field}", e.reason) for e in exc.errors]
            errors += [] if exc.errors else [FieldError(f"requests[{index}]", exc.message)]
            continue
        if prepared is not None:
            grant, key, payload = prepared
            groups.setdefault((grant.product.id, key), []).append(payload)
            tracked += 1
    if errors and is_debug(request):
        raise InvalidInput("invalid bulk tracking request", errors)
    metrics: Metrics = request.state.metrics
    for _ in invalid:
        metrics.count_rejected(matomo.NAME, "invalid_request")
    for (product_id, key), payloads in groups.items():
        await accept(
            request, dialect=matomo.NAME, product_id=product_id, key=key, payloads=payloads
        )
    owner = await request.state.directory.resolve(bulk.token_auth) if bulk.token_auth else None
    answer = BulkAnswer(status="success", tracked=tracked, invalid=len(invalid))
    if owner is not None and owner.kind is KeyKind.SERVER:
        answer.invalid_indices = invalid
    return Response(_json.encode(answer), media_type="application/json")


async def track(request: Request) -> Response:
    query = dict(request.query_params)  # a repeated name: the last, as PHP's $_GET
    if request.method == "GET":
        if not query:
            return PlainTextResponse(EMPTY_PAGE)
        return await _single(request, query)
    if request.headers.get("content-length") == "0":
        return await _single(request, query)
    raw = await read_body(request, matomo_wire.MAX_BODY_BYTES)
    if matomo_wire.is_bulk(raw, request.headers.get("content-type")):
        return await _bulk(request, raw)
    return await _single(request, matomo_wire.form(raw) | query)  # $_GET + $_POST: GET wins


_PARAMETERS = (
    ("idsite", "the product's write key, or a Matomo site number the product registered"),
    ("rec", "1 to track (anything else: nothing is tracked)"),
    ("url", "the page's URL"),
    ("action_name", "the page title (a page view)"),
    ("_id", "visitor id: the anonymous id"),
    ("uid", "user id"),
    ("urlref", "referrer"),
    ("e_c", "event category"),
    ("e_a", "event action: the event's name"),
    ("e_n", "event name"),
    ("e_v", "event value (a number)"),
    ("link", "an outlink's URL"),
    ("download", "a download's URL"),
    ("ping", "1: a heartbeat (engagement)"),
    ("cdt", "event time: unix seconds or a UTC date-time (older than 24 h: token_auth)"),
    ("res", "screen, WIDTHxHEIGHT"),
    ("lang", "language"),
    ("ua", "user agent"),
    ("cip", "client IP (only with token_auth)"),
    ("pv_id", "page view id"),
    ("rand", "a random value per request"),
    ("token_auth", "the product's server key"),
    ("send_image", "0: answer 204 instead of a GIF"),
)
_DESCRIPTION = (
    "Matomo's Tracking HTTP API. A tracked request is answered with a 1x1 GIF (never "
    "cached), or 204 with `send_image=0`; a request that cannot be tracked gets the same "
    "media with 400 (an unknown site, an invalid field) or 403 (an origin the product does "
    "not allow), the reason as text with `send_image=0`. `/debug/...` answers the reasons "
    "as JSON."
)

ENDPOINTS = tuple(
    endpoint
    for path in ("/matomo.php", "/piwik.php")
    for endpoint in (
        Endpoint(
            path,
            ("GET",),
            track,
            f"matomo.{path.strip('/').replace('.', '_')}",
            "Matomo: one tracking request in the query string",
            key=KeyKind.WRITE,
            description=_DESCRIPTION,
            responses={200: None, 204: None, 400: None, 403: None, 503: ErrorBody},
            media_by_status={
                200: ("image/gif", "text/plain"),
                400: ("image/gif", "text/plain"),
                403: ("image/gif", "text/plain"),
            },
            parameters=tuple(
                {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
                for name, what in _PARAMETERS
            ),
            media="image/gif",
        ),
        Endpoint(
            path,
            ("POST",),
            track,
            f"matomo.{path.strip('/').replace('.', '_')}",
            "Matomo: bulk tracking (JSON), or one form-encoded tracking request",
            key=KeyKind.WRITE,
            key_in_body=True,
            description=_DESCRIPTION
            + " A JSON body is a bulk request: each request is tracked or counted invalid, "
            "and the answer counts them. A form-encoded body is one request, answered as a GET.",
            request=matomo_wire.BulkBody,
            responses={200: BulkAnswer, 204: None, **INGEST_ERRORS},
        ),
    )
)
