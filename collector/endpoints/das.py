"""The Data Analytics Service's endpoints (``sightline.dialects.das``).

The create endpoints answer 201 with the page's response body, built from the
validated body and the envelope (no database); every client error of this
dialect is a ``{"detail": [{"loc", "msg", "type"}]}`` body, invalid input a 422.
``GET .../search`` reads the store through ``search_entity_events``.

The key travels in a header (``Authorization: Bearer``, ``X-API-Key`` or Basic) or,
since the page's requests carry none, as a path prefix: every route is served
again under ``/k/<key>`` (``/k/<key>/api/v1/lead_analytics``), so an integration
changes only its base URL. A key in a URL lands in proxies' access logs: prefer a
write key there, which may only send; searching needs the server key.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, basic_auth_user, bearer_token
from collector.bodies import read_body
from collector.directory import Grant, KeyKind
from collector.intake import Payload, accept
from collector.routing import ANY_KEY_SCHEMES, Endpoint, ErrorBody, Handler, Schema
from sightline.dialects import das
from sightline.envelope import Envelope
from sightline.errors import ClientError, FieldError, InvalidInput
from sightline.model import Event
from sightline.store.lookups import EntitySearch, read, search_entity_events

STYLE = das.STYLE


class AnalyticsEventRecord(msgspec.Struct, kw_only=True):
    customer_id: str
    entity_id: str | None
    entity_type: str | None
    user_id: str
    tool_signature: str | None
    recording_id: str | None
    event_type: str
    event_id: str | None
    message: str | None
    entityType: str
    partitionKey: str
    sortKey: str
    created_at: str
    updated_at: str


class LeadRecord(msgspec.Struct, kw_only=True):
    """The page's 201 body for a lead event, keys in the page's order."""

    customer_id: str
    lead_id: str
    user_id: str
    tool_signature: str | None
    recording_id: str | None
    event_type: str
    event_id: str | None
    message: str | None
    entityType: str
    partitionKey: str
    sortKey: str
    created_at: str
    updated_at: str


class ContactRecord(msgspec.Struct, kw_only=True):
    """The page's 201 body for a contact event, keys in the page's order."""

    customer_id: str
    contact_id: str
    user_id: str
    tool_signature: str | None
    recording_id: str | None
    event_type: str
    event_id: str | None
    entityType: str
    partitionKey: str
    sortKey: str
    message: str | None
    created_at: str
    updated_at: str


class Recording(msgspec.Struct, kw_only=True):
    customer_id: str | None
    entity_type: str | None
    entity_id: str | None
    user_id: str | None
    tool_signature: str | None
    recording_id: str | None
    event_type: str
    event_id: str | None
    message: str | None
    created_at: str
    updated_at: str


class SearchMeta(msgspec.Struct, kw_only=True):
    page: int
    pageSize: int
    rowCount: int


class SearchResult(msgspec.Struct, kw_only=True):
    recordings: list[Recording]
    meta: SearchMeta


class ErrorDetail(msgspec.Struct, kw_only=True):
    loc: list[str]
    msg: str
    type: str


class DasError(msgspec.Struct, kw_only=True):
    """Every client error of this dialect: ``{"detail": [{"loc", "msg", "type"}]}``."""

    detail: list[ErrorDetail]


def das_time(moment: datetime) -> str:
    """``2018-09-03T17:06:05.719Z``: the page's format (UTC, milliseconds)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


_RECORDS = {
    # kind: (entityType, partitionKey prefix)
    "analytics_event": ("analytics_event", "Analytics event"),
    "lead": ("lead_analytics_event", "Lead analytics event"),
    "contact": ("contact_analytics_event", "Contact analytics event"),
}


def created_record(body: das.DasEvent, envelope: Envelope) -> msgspec.Struct:
    """The page's 201 body for an accepted event: the record plus the service's keys.

    The uuid in ``partitionKey`` is the envelope id; the times are when it was received.
    """
    entity_type, partition = _RECORDS[envelope.kind]
    when = das_time(envelope.received_at)
    common: dict[str, Any] = {
        "customer_id": body.customer_id,
        "user_id": body.user_id,
        "tool_signature": body.tool_signature,
        "recording_id": body.recording_id,
        "event_type": body.event_type,
        "event_id": body.event_id,
        "message": body.message,
        "entityType": entity_type,
        "partitionKey": f"{partition}|{envelope.id}",
        "sortKey": body.customer_id,
        "created_at": when,
        "updated_at": when,
    }
    if isinstance(body, das.DasLeadEvent):
        return LeadRecord(lead_id=body.lead_id or body.entity_id or "", **common)
    if isinstance(body, das.DasContactEvent):
        return ContactRecord(contact_id=body.contact_id or body.entity_id or "", **common)
    assert isinstance(body, das.DasAnalyticsEvent)
    return AnalyticsEventRecord(entity_id=body.entity_id, entity_type=body.entity_type, **common)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def recording(event: Event) -> Recording:
    """A stored event (of any dialect) as the search's ``recordings`` item."""
    when = das_time(event.received_at)
    return Recording(
        customer_id=event.account_id,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        user_id=event.user_id,
        tool_signature=_text(event.properties.get("tool_signature")),
        recording_id=event.recording_id,
        event_type=event.name,
        event_id=_text(event.properties.get("event_id")),
        message=_text(event.properties.get("message")),
        created_at=when,
        updated_at=when,
    )


# -- endpoints -------------------------------------------------------------------------


KEY_PREFIX = "/k/{key}"
"""Every route again under ``/k/<key>``: the page's requests carry only ``Content-Type`` and
``Accept``, so an integration that can change only its base URL puts the key there."""


def _key(request: Request) -> str | None:
    """The key in the path (``/k/<key>/api/v1/...``), else in a header."""
    return (
        request.path_params.get("key")
        or bearer_token(request)
        or request.headers.get("x-api-key")
        or basic_auth_user(request)
    )


def _das_style(exc: ClientError) -> ClientError:
    exc.style = STYLE
    if isinstance(exc, InvalidInput):
        exc.status = 422
    return exc


async def _grant(request: Request, require: KeyKind = KeyKind.WRITE) -> Grant:
    return await authorize(
        request.state.directory,
        _key(request),
        origin=request.headers.get("origin"),
        require=require,
        style=STYLE,
    )


def _create(kind: str) -> Handler:
    async def create(request: Request) -> Response:
        try:
            raw = await read_body(request, das.MAX_BODY_BYTES)
        except ClientError as exc:
            raise _das_style(exc) from None
        body = das.validate(raw, kind)
        grant = await _grant(request)
        (envelope,) = await accept(
            request,
            dialect=das.NAME,
            product_id=grant.product.id,
            key=grant.kind,
            payloads=[Payload(kind, msgspec.Raw(raw))],
        )
        record = created_record(body, envelope)
        return Response(msgspec.json.encode(record), status_code=201, media_type="application/json")

    create.__name__ = create.__qualname__ = f"create_{kind}_event"
    return create


def _positive(raw: str | None, name: str, default: int, errors: list[FieldError]) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    limit = das.MAX_PAGE_SIZE if name == "pageSize" else 10**9
    if not 1 <= value <= limit:
        errors.append(FieldError(name, f"must be an integer from 1 to {limit}"))
    return value


def search_parameters(request: Request, entity: str, product_id: str) -> EntitySearch:
    """The page's URI parameters; all missing or invalid ones in one 422."""
    query = request.query_params
    errors: list[FieldError] = []
    recordings = tuple(
        r for r in query.getlist("recording_id") + query.getlist("recording_id[]") if r
    )
    if not recordings:
        errors.append(FieldError("recording_id", "field required"))
    required: dict[str, str] = {}
    for name in ("customer_id", "user_id", f"{entity}_id"):
        value = query.get(name)
        if not value:
            errors.append(FieldError(name, "field required"))
        required[name] = value or ""
    latest_raw = (query.get("latest") or "false").lower()
    if latest_raw not in ("true", "false", "1", "0"):
        errors.append(FieldError("latest", "must be true or false"))
    page = _positive(query.get("page"), "page", 1, errors)
    page_size = _positive(query.get("pageSize"), "pageSize", 10, errors)
    if errors:
        raise InvalidInput("invalid search", errors, status=422, style=STYLE)
    return EntitySearch(
        product_id=product_id,
        entity_type=entity,
        entity_id=required[f"{entity}_id"],
        account_id=required["customer_id"],
        user_id=required["user_id"],
        recording_ids=recordings,
        latest=latest_raw in ("true", "1"),
        page=page,
        page_size=page_size,
    )


def _search(entity: str) -> Handler:
    async def search(request: Request) -> Response:
        grant = await _grant(request, KeyKind.SERVER)
        wanted = search_parameters(request, entity, grant.product.id)
        found, total = await asyncio.to_thread(
            read, request.state.engine, lambda conn: search_entity_events(conn, wanted)
        )
        result = SearchResult(
            recordings=[recording(e) for e in found],
            meta=SearchMeta(page=wanted.page, pageSize=wanted.page_size, rowCount=total),
        )
        return Response(msgspec.json.encode(result), media_type="application/json")

    search.__name__ = search.__qualname__ = f"search_{entity}_events"
    return search


DAS_ERRORS: dict[int, Schema] = {
    401: DasError,
    403: DasError,
    413: DasError,
    422: DasError,
    503: ErrorBody,
}


def _search_parameters(entity: str) -> tuple[dict[str, Any], ...]:
    def text(name: str, required: bool = True, description: str = "") -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": required,
            "schema": {"type": "string"},
            "description": description,
        }

    return (
        {
            "name": "recording_id",
            "in": "query",
            "required": True,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
        },
        text("customer_id"),
        text("user_id"),
        text(f"{entity}_id"),
        {"name": "latest", "in": "query", "schema": {"type": "boolean"}},
        text("page", False, "Page number"),
        text("pageSize", False, "Page size"),
    )


def _create_endpoint(path: str, kind: str, record: type[msgspec.Struct], summary: str) -> Endpoint:
    return Endpoint(
        path,
        ("POST",),
        _create(kind),
        f"das.create_{kind}_event" if kind != "analytics_event" else "das.create_analytics_event",
        summary,
        key=KeyKind.WRITE,
        schemes=ANY_KEY_SCHEMES,
        request=das.SCHEMAS[kind],
        responses={201: record, **DAS_ERRORS},
    )


def _search_endpoint(entity: str) -> Endpoint:
    return Endpoint(
        f"/api/v1/{entity}_analytics/search",
        ("GET",),
        _search(entity),
        f"das.search_{entity}_events",
        f"DAS: search {entity} analytics events",
        key=KeyKind.SERVER,
        schemes=ANY_KEY_SCHEMES,
        responses={200: SearchResult, **DAS_ERRORS},
        parameters=_search_parameters(entity),
    )


_BY_HEADER = (
    _create_endpoint(
        "/api/v1/analytics_events",
        "analytics_event",
        AnalyticsEventRecord,
        "DAS: create an analytics event",
    ),
    _create_endpoint(
        "/api/v1/lead_analytics",
        "lead",
        LeadRecord,
        "DAS: create a lead (or browser extension) analytics event",
    ),
    _search_endpoint("lead"),
    _create_endpoint(
        "/api/v1/contact_analytics",
        "contact",
        ContactRecord,
        "DAS: create a contact analytics event",
    ),
    _search_endpoint("contact"),
)

_KEY_PARAMETER = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
    "description": "A Sightline key (a write key, or a server key to search), in place of a header",
}


def _keyed(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` under ``/k/{key}``: the same handler, the key taken from the path."""
    return dataclasses.replace(
        endpoint,
        path=KEY_PREFIX + endpoint.path,
        name=f"{endpoint.name}.path_key",
        summary=f"{endpoint.summary} (key in the path)",
        schemes=(),
        parameters=(_KEY_PARAMETER, *endpoint.parameters),
    )


ENDPOINTS = (*_BY_HEADER, *(_keyed(endpoint) for endpoint in _BY_HEADER))
