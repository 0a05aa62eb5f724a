"""The Data Analytics Service dialect (seeds/002_b9f0c02458064983.txt).

``POST /api/v1/analytics_events``, ``/api/v1/lead_analytics`` and
``/api/v1/contact_analytics`` answer 201 with the page's response body: the
stored record plus ``entityType``, ``partitionKey`` (``Lead analytics
event|<uuid>``), ``sortKey`` (the customer id, as in the page's example),
``created_at`` and ``updated_at``. Invalid input is a 422 with a list of field
errors (``{"detail": [{"loc", "msg", "type"}]}``), and so is every other client
error of this dialect rendered in that shape.

The response needs no database: the record is the validated body, the uuid in
``partitionKey`` is the envelope id (which the stored event's message id is
derived from), and the times are when it was received. So these endpoints stay
on the queue path like every other ingest endpoint, and answer after Redis
acknowledged the envelope.

Mapping: ``customer_id`` is the account (DAS's corporate customer), ``user_id``
the user, lead / contact the event's entity, ``recording_id`` the recording,
``event_type`` the event name. ``tool_signature: "browser_extension"`` makes an
``extension`` event. ``javascript_local_time`` becomes the event time when it
is an ISO-8601 time with an offset; the page's own examples hold placeholders
("local_time"), so anything else is kept as a property and the receive time is
used.

``GET .../search`` reads the store (server key): every event about that entity,
whichever dialect wrote it, in the page's ``{"recordings", "meta"}`` shape.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, basic_auth_user, bearer_token
from collector.bodies import read_body
from collector.decoding import decode
from collector.dialects.fields import EntityType, Id, Name, Text, client_context, parse_iso8601
from collector.directory import Grant, KeyKind
from collector.envelope import Envelope
from collector.errors import ClientError, ErrorStyle, FieldError, InvalidInput
from collector.intake import Payload, accept
from sightline.ids import derived_id
from sightline.model import Event, EventType, Normalised
from sightline.store.lookups import EntitySearch, read, search_entity_events

NAME = "das"
MAX_BODY_BYTES = 64 * 1024
MAX_PAGE_SIZE = 1000
EXTENSION_SIGNATURE = "browser_extension"
STYLE = ErrorStyle.DAS


# -- wire schema -----------------------------------------------------------------------


class DasEvent(msgspec.Struct, kw_only=True):
    """The fields every Data Analytics Service event body shares."""

    customer_id: Id
    user_id: Id
    event_type: Name
    tool_signature: Name | None = None
    recording_id: Id | None = None
    event_id: Id | None = None
    message: Text | None = None
    javascript_local_time: Text | None = None
    apex_local_time: Text | None = None
    event_environment_path: Text | None = None
    name_parser_event_id: Id | None = None
    recommendation_model_event_id: Id | None = None
    version_info: dict[str, Any] | None = None


class DasAnalyticsEvent(DasEvent, kw_only=True):
    """``POST /api/v1/analytics_events``."""

    entity_id: Id | None = None
    entity_type: EntityType | None = None


class DasLeadEvent(DasEvent, kw_only=True):
    """``POST /api/v1/lead_analytics`` (browser extensions send ``entity_id`` instead)."""

    lead_id: Id | None = None
    entity_id: Id | None = None


class DasContactEvent(DasEvent, kw_only=True):
    """``POST /api/v1/contact_analytics``."""

    contact_id: Id | None = None
    entity_id: Id | None = None


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


# -- endpoints -------------------------------------------------------------------------


def _header_key(request: Request) -> str | None:
    return bearer_token(request) or request.headers.get("x-api-key") or basic_auth_user(request)


def _das_style(exc: ClientError) -> ClientError:
    exc.style = STYLE
    if isinstance(exc, InvalidInput):
        exc.status = 422
    return exc


async def _grant(request: Request, require: KeyKind = KeyKind.WRITE) -> Grant:
    return await authorize(
        request.state.directory,
        _header_key(request),
        origin=request.headers.get("origin"),
        require=require,
        style=STYLE,
    )


async def _create(request: Request, schema: type[DasEvent], kind: str) -> tuple[DasEvent, Envelope]:
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except ClientError as exc:
        raise _das_style(exc) from None
    body = decode(raw, schema, what=f"{kind} event", status=422, style=STYLE)
    if isinstance(body, DasLeadEvent | DasContactEvent):
        own = body.lead_id if isinstance(body, DasLeadEvent) else body.contact_id
        if own is None and body.entity_id is None:
            name = "lead_id" if isinstance(body, DasLeadEvent) else "contact_id"
            raise InvalidInput(
                f"invalid {kind} event",
                [FieldError(name, f"field required ({name} or entity_id)")],
                status=422,
                style=STYLE,
            )
    grant = await _grant(request)
    (envelope,) = await accept(
        request,
        dialect=NAME,
        product_id=grant.product.id,
        payloads=[Payload(kind, msgspec.Raw(raw))],
    )
    return body, envelope


def das_time(moment: datetime) -> str:
    """``2018-09-03T17:06:05.719Z``: the page's format (UTC, milliseconds)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _created(record: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(record), status_code=201, media_type="application/json")


def _common(
    body: DasAnalyticsEvent | DasLeadEvent | DasContactEvent,
    envelope: Envelope,
    entity_type: str,
    partition: str,
) -> dict[str, Any]:
    """The fields every DAS response record shares (their order is the struct's)."""
    when = das_time(envelope.received_at)
    return {
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


async def create_analytics_event(request: Request) -> Response:
    body, envelope = await _create(request, DasAnalyticsEvent, "analytics_event")
    assert isinstance(body, DasAnalyticsEvent)
    return _created(
        AnalyticsEventRecord(
            entity_id=body.entity_id,
            entity_type=body.entity_type,
            **_common(body, envelope, "analytics_event", "Analytics event"),
        )
    )


async def create_lead_event(request: Request) -> Response:
    body, envelope = await _create(request, DasLeadEvent, "lead")
    assert isinstance(body, DasLeadEvent)
    return _created(
        LeadRecord(
            lead_id=body.lead_id or body.entity_id or "",
            **_common(body, envelope, "lead_analytics_event", "Lead analytics event"),
        )
    )


async def create_contact_event(request: Request) -> Response:
    body, envelope = await _create(request, DasContactEvent, "contact")
    assert isinstance(body, DasContactEvent)
    return _created(
        ContactRecord(
            contact_id=body.contact_id or body.entity_id or "",
            **_common(body, envelope, "contact_analytics_event", "Contact analytics event"),
        )
    )


def _positive(raw: str | None, name: str, default: int, errors: list[FieldError]) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= (MAX_PAGE_SIZE if name == "pageSize" else 10**9):
        limit = MAX_PAGE_SIZE if name == "pageSize" else 10**9
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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def recording(event: Event) -> Recording:
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


async def _search(request: Request, entity: str) -> Response:
    grant = await _grant(request, KeyKind.SERVER)
    search = search_parameters(request, entity, grant.product.id)
    found, total = await asyncio.to_thread(
        read, request.state.engine, lambda conn: search_entity_events(conn, search)
    )
    result = SearchResult(
        recordings=[recording(e) for e in found],
        meta=SearchMeta(page=search.page, pageSize=search.page_size, rowCount=total),
    )
    return Response(msgspec.json.encode(result), media_type="application/json")


async def search_lead_events(request: Request) -> Response:
    return await _search(request, "lead")


async def search_contact_events(request: Request) -> Response:
    return await _search(request, "contact")


# -- mapping to the canonical model (worker side, pure) --------------------------------

_SCHEMAS: dict[str, type[DasEvent]] = {
    "analytics_event": DasAnalyticsEvent,
    "lead": DasLeadEvent,
    "contact": DasContactEvent,
}
_PROPERTIES = (
    "tool_signature",
    "event_id",
    "message",
    "javascript_local_time",
    "apex_local_time",
    "event_environment_path",
    "name_parser_event_id",
    "recommendation_model_event_id",
    "version_info",
)


def _entity(body: DasEvent) -> tuple[str | None, str | None]:
    if isinstance(body, DasLeadEvent):
        return "lead", body.lead_id or body.entity_id
    if isinstance(body, DasContactEvent):
        return "contact", body.contact_id or body.entity_id
    assert isinstance(body, DasAnalyticsEvent)
    return body.entity_type, body.entity_id


def _event_time(body: DasEvent) -> datetime | None:
    """``javascript_local_time`` when it is a full ISO-8601 time with an offset."""
    if body.javascript_local_time is None:
        return None
    moment = parse_iso8601(body.javascript_local_time)
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment
    return None


def normalise(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, _SCHEMAS[envelope.kind])
    entity_type, entity_id = _entity(body)
    happened = _event_time(body)
    is_extension = body.tool_signature == EXTENSION_SIGNATURE
    properties = {
        name: getattr(body, name) for name in _PROPERTIES if getattr(body, name) is not None
    }
    event = Event(
        id="",
        message_id=derived_id(envelope.id, "0"),
        product_id=envelope.product_id,
        name=body.event_type,
        type=EventType.EXTENSION if is_extension else EventType.TRACK,
        timestamp=happened or envelope.received_at,
        original_timestamp=happened,
        received_at=envelope.received_at,
        user_id=body.user_id,
        account_id=body.customer_id,
        entity_type=entity_type,
        entity_id=entity_id,
        recording_id=body.recording_id,
        properties=properties,
        context=client_context(None, None, envelope.ip, envelope.user_agent),
        dialect=NAME,
    )
    return Normalised(events=(event,))
