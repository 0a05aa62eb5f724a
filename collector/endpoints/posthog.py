"""PostHog's capture API, and the empty flags and remote config posthog-js asks for.

Capture (``sightline.dialects.posthog``): ``/e``, ``/i/v0/e``, ``/capture``, ``/track``,
``/engage``, ``/batch``, each with and without the trailing slash the SDKs add, GET
and POST. ``200 {"status": "Ok"}`` as PostHog's capture answers, ``204`` for
``?beacon=1``. PostHog's capture accepts any well-formed token and drops the events of an
unknown one later, silently; Sightline refuses them (401), so nothing is stored for a
project it does not know. Errors are in the JSON shape of PostHog's API,
``{"type", "code", "detail", "attr"}`` (``attr`` names the field), where PostHog's
capture answers a line of text: the SDKs read only the status.

``/flags`` and ``/decide`` (any ``v=``) answer honestly that there is nothing to
evaluate: no feature flags, no payloads, no session recording, no surveys, no site
apps. ``/array/<token>/config`` (and ``config.js``, the script form posthog-js loads
first) is the same empty remote configuration, naming ``/i/v0/e/`` as the capture
endpoint and gzip as the compression, as PostHog's does. Sightline evaluates no
flags: an SDK sees every flag as absent, which is how PostHog answers a project
without flags. All of them check the token like capture does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize_site
from collector.bodies import inflate, read_body
from collector.directory import KeyKind
from collector.intake import Payload, accept
from collector.routing import Endpoint, ErrorBody, Schema
from sightline.dialects import posthog
from sightline.dialects.decoding import decode
from sightline.dialects.posthog_wire import MAX_LZ64_BYTES, CaptureBatch, request_payload
from sightline.errors import ClientError, NotFound, Unauthorized

FORMAT = "posthog"
MISSING_KEY = "API key not provided. You can find your project API key in PostHog project settings."
INVALID_KEY = (
    "Project API key invalid. You can find your project API key in PostHog project settings."
)
_json = msgspec.json.Encoder()


class PostHogError(msgspec.Struct, kw_only=True):
    """PostHog's error body."""

    type: str
    """``validation_error``, ``authentication_error``."""
    code: str
    detail: str
    attr: str | None = None
    """The field at fault, when there is one."""


class CaptureAnswer(msgspec.Struct):
    status: str = "Ok"


class FlagsAnswer(msgspec.Struct, kw_only=True):
    """No flags to evaluate; the rest of the old ``/decide`` answer, all switched off."""

    flags: dict[str, Any]
    featureFlags: dict[str, Any]
    featureFlagPayloads: dict[str, Any]
    errorsWhileComputingFlags: bool
    quotaLimited: list[str]
    config: dict[str, Any]
    supportedCompression: list[str]
    sessionRecording: bool
    autocapture_opt_out: bool
    capturePerformance: bool
    heatmaps: bool
    surveys: bool
    siteApps: list[Any]
    toolbarParams: dict[str, Any]
    isAuthenticated: bool
    defaultIdentifiedOnly: bool


class RemoteConfig(msgspec.Struct, kw_only=True):
    """``/array/<token>/config``: nothing enabled, capture at ``/i/v0/e/`` with gzip."""

    token: str
    supportedCompression: list[str]
    hasFeatureFlags: bool
    analytics: dict[str, str]
    autocapture_opt_out: bool
    autocaptureExceptions: bool
    captureDeadClicks: bool
    capturePerformance: bool
    elementsChainAsString: bool
    sessionRecording: bool
    heatmaps: bool
    surveys: bool
    productTours: bool
    defaultIdentifiedOnly: bool
    siteApps: list[Any]


COMPRESSION = ["gzip", "gzip-js"]
FLAGS = FlagsAnswer(
    flags={},
    featureFlags={},
    featureFlagPayloads={},
    errorsWhileComputingFlags=False,
    quotaLimited=[],
    config={"enable_collect_everything": True},
    supportedCompression=COMPRESSION,
    sessionRecording=False,
    autocapture_opt_out=False,
    capturePerformance=False,
    heatmaps=False,
    surveys=False,
    siteApps=[],
    toolbarParams={},
    isAuthenticated=False,
    defaultIdentifiedOnly=True,
)


def remote_config(token: str) -> RemoteConfig:
    return RemoteConfig(
        token=token,
        supportedCompression=COMPRESSION,
        hasFeatureFlags=False,
        analytics={"endpoint": "/i/v0/e/"},
        autocapture_opt_out=False,
        autocaptureExceptions=False,
        captureDeadClicks=False,
        capturePerformance=False,
        elementsChainAsString=True,
        sessionRecording=False,
        heatmaps=False,
        surveys=False,
        productTours=False,
        defaultIdentifiedOnly=True,
        siteApps=[],
    )


_CODES = {
    400: ("validation_error", "invalid_payload"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request", "not_found"),
    413: ("validation_error", "payload_too_large"),
    415: ("validation_error", "unsupported_media_type"),
}


def error_answer(exc: ClientError) -> Response:
    if exc.status == 401:
        missing = exc.message == MISSING_KEY
        kind, code = "authentication_error", "missing_api_key" if missing else "invalid_api_key"
        detail = MISSING_KEY if missing else INVALID_KEY
    else:
        kind, code = _CODES.get(exc.status, ("validation_error", "invalid_request"))
        reasons = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
        detail = f"{exc.message} ({reasons})" if reasons else exc.message
    body = PostHogError(
        type=kind, code=code, detail=detail, attr=exc.errors[0].field if exc.errors else None
    )
    return Response(_json.encode(body), status_code=exc.status, media_type="application/json")


def _inflate(data: bytes) -> bytes:
    return inflate(data, "gzip", posthog.MAX_BODY_BYTES)


async def _payload(request: Request, query: dict[str, str]) -> bytes:
    """The JSON text of the request's events: from the body (POST) or ``data`` (GET)."""
    raw = None if request.method == "GET" else await read_body(request, posthog.MAX_BODY_BYTES)
    content_type = request.headers.get("content-type", "")
    args = (raw, query, content_type, _inflate, posthog.MAX_BODY_BYTES)
    lz64 = "lz64" in request.url.query or (raw is not None and b"compression=lz64" in raw)
    if lz64 and (raw is None or len(raw) <= 2 * MAX_LZ64_BYTES):
        return await run_in_threadpool(request_payload, *args)  # pure-Python lz-string
    return request_payload(*args)


def _sent_at(millis: str | None) -> datetime | None:
    """posthog-js's ``_`` query parameter: its clock when it sent, in ms since the epoch."""
    if millis is None or not millis.isdigit() or len(millis) > 13:  # up to year 2286
        return None
    return datetime.fromtimestamp(int(millis) / 1000, UTC)


async def capture(request: Request) -> Response:
    try:
        query = dict(request.query_params)
        parsed = posthog.validate(await _payload(request, query))
        if parsed.token is None:
            raise Unauthorized(MISSING_KEY)
        grant = await authorize_site(
            request.state.directory,
            FORMAT,
            parsed.token,
            origin=request.headers.get("origin"),
        )
    except ClientError as exc:
        return error_answer(exc)
    await accept(
        request,
        dialect=posthog.NAME,
        product_id=grant.product.id,
        key=grant.kind,
        payloads=[Payload(posthog.KIND, msgspec.Raw(event)) for event in parsed.events],
        sent_at=parsed.sent_at or _sent_at(query.get("_")),
    )
    if query.get("beacon") == "1":
        return Response(status_code=204)
    return Response(_json.encode(CaptureAnswer()), media_type="application/json")


def _token_in(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    token = document.get("token") or document.get("api_key")
    return token if isinstance(token, str) and token else None


async def _authorize_token(request: Request, token: str | None) -> None:
    if not token:
        raise Unauthorized(MISSING_KEY)
    await authorize_site(
        request.state.directory, FORMAT, token, origin=request.headers.get("origin")
    )


async def flags(request: Request) -> Response:
    try:
        query = dict(request.query_params)
        token = query.get("token") or query.get("api_key")
        if request.method == "POST" or "data" in query:
            document = decode(await _payload(request, query), Any, what="flags request")
            token = _token_in(document) or token
        await _authorize_token(request, token)
    except ClientError as exc:
        return error_answer(exc)
    return Response(_json.encode(FLAGS), media_type="application/json")


async def _config_token(request: Request) -> str:
    """The path's token, or 404 as PostHog answers for a project it does not know."""
    token: str = request.path_params["token"]
    try:
        await _authorize_token(request, token)
    except Unauthorized:
        raise NotFound(f"no project with the token {token!r}") from None
    return token


async def config(request: Request) -> Response:
    try:
        token = await _config_token(request)
    except ClientError as exc:
        return error_answer(exc)
    return Response(_json.encode(remote_config(token)), media_type="application/json")


async def config_js(request: Request) -> Response:
    try:
        token = await _config_token(request)
    except ClientError as exc:
        return error_answer(exc)
    entry = _json.encode({"config": remote_config(token), "siteApps": []}).decode()
    script = (
        "(function(){var w=window;w._POSTHOG_REMOTE_CONFIG=w._POSTHOG_REMOTE_CONFIG||{};"
        f"w._POSTHOG_REMOTE_CONFIG[{_json.encode(token).decode()}]={entry};}})();\n"
    )
    return Response(script, media_type="application/javascript")


# -- declarations ----------------------------------------------------------------------

CAPTURE_PATHS = ("/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch")
ERRORS: dict[int, Schema] = {
    400: PostHogError,
    401: PostHogError,
    403: PostHogError,
    413: PostHogError,
    415: PostHogError,
    503: ErrorBody,
}
_QUERY = (
    ("compression", "gzip, gzip-js, base64 or lz64: how the payload is encoded"),
    ("data", "the payload (GET, or instead of a body): JSON or base64 of it"),
    ("_", "the client's send time in ms since the epoch (clock-skew correction)"),
    ("beacon", "1: answer 204 without a body"),
)
QUERY = tuple(
    {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
    for name, what in _QUERY
)
TOKEN = (
    {
        "name": "token",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "the PostHog project token: a write key or a registered token",
    },
)


def _capture_endpoints(path: str) -> tuple[Endpoint, ...]:
    slug = path.strip("/").replace("/", "_") or "root"
    endpoints = []
    for suffix in ("", "/"):
        for method in ("POST", "GET"):
            endpoints.append(
                Endpoint(
                    path + suffix,
                    (method,),
                    capture,
                    f"posthog.capture_{slug}{'_slash' if suffix else ''}_{method.lower()}",
                    f"PostHog: capture events ({method} {path}{suffix})",
                    key=KeyKind.WRITE,
                    key_in_body=True,
                    request=CaptureBatch if method == "POST" else None,
                    responses={200: CaptureAnswer, 204: None, **ERRORS},
                    parameters=QUERY,
                    description=(
                        "The body (or `data`) holds one event, a list, or "
                        '`{"api_key", "batch": [...], "sent_at"}`, as JSON, gzip, base64, '
                        "a `data=` form or lz64; the project token (`api_key`, `token`, "
                        "`properties.token`) is a write key or a registered PostHog token."
                    ),
                )
            )
    return tuple(endpoints)


def _flags_endpoints(path: str) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            path + suffix,
            ("GET", "POST"),
            flags,
            f"posthog.{path.strip('/')}{'_slash' if suffix else ''}",
            f"PostHog: feature flags ({path}{suffix}): none, honestly",
            key=KeyKind.WRITE,
            key_in_body=True,
            responses={200: FlagsAnswer, **ERRORS},
            parameters=QUERY[:2],
        )
        for suffix in ("", "/")
    )


ENDPOINTS = (
    *(e for path in CAPTURE_PATHS for e in _capture_endpoints(path)),
    *_flags_endpoints("/flags"),
    *_flags_endpoints("/decide"),
    Endpoint(
        "/array/{token}/config",
        ("GET",),
        config,
        "posthog.remote_config",
        "PostHog: remote config (nothing enabled)",
        responses={200: RemoteConfig, 404: PostHogError, **ERRORS},
        parameters=TOKEN,
    ),
    Endpoint(
        "/array/{token}/config.js",
        ("GET",),
        config_js,
        "posthog.remote_config_js",
        "PostHog: remote config as a script (nothing enabled)",
        responses={200: None, 404: PostHogError, **ERRORS},
        parameters=TOKEN,
        media_by_status={200: ("application/javascript",)},
    ),
)
