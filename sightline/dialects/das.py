"""The Data Analytics Service dialect (seeds/002_b9f0c02458064983.txt).

``POST /api/v1/analytics_events``, ``/api/v1/lead_analytics`` and
``/api/v1/contact_analytics`` answer 201 with the page's response body: the
stored record plus ``entityType``, ``partitionKey`` (``Lead analytics
event|<uuid>``), ``sortKey`` (the customer id, as in the page's example),
``created_at`` and ``updated_at``. Invalid input is a 422 with a list of field
errors (``{"detail": [{"loc", "msg", "type"}]}``), and so is every other client
error of this dialect rendered in that shape.

The response needs no database: the record is the validated body, the uuid in
``partitionKey`` is the envelope id, and the times are when it was received (the
stored event's message id is derived from its content, so a retried request within
a minute is stored once: ``sightline.dialects.dedup``). So these endpoints stay
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

from datetime import datetime
from typing import Any

import msgspec

from sightline.dialects.base import Dialect, new_event
from sightline.dialects.decoding import decode, depth_error
from sightline.dialects.dedup import content_id
from sightline.dialects.fields import EntityType, Id, Name, Text, parse_iso8601
from sightline.envelope import Envelope
from sightline.errors import ErrorStyle, FieldError, InvalidInput
from sightline.model import EventType, Normalised

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


SCHEMAS: dict[str, type[DasEvent]] = {
    "analytics_event": DasAnalyticsEvent,
    "lead": DasLeadEvent,
    "contact": DasContactEvent,
}
"""The event bodies by envelope kind (and endpoint)."""


# -- validation ------------------------------------------------------------------------


def validate(raw: bytes, kind: str) -> DasEvent:
    """One event body of ``kind`` (``analytics_event``, ``lead``, ``contact``), or 422.

    The 422 lists every failing field, the lead's or contact's id included.
    """
    errors: list[FieldError] = []
    try:
        body: DasEvent | None = decode(
            raw, SCHEMAS[kind], what=f"{kind} event", every_field=True, status=422, style=STYLE
        )
        fields: Any = msgspec.structs.asdict(body) if body is not None else {}
    except InvalidInput as exc:
        body, errors = None, list(exc.errors)
        fields = _loose(raw)
    if kind in ("lead", "contact") and isinstance(fields, dict):
        name = f"{kind}_id"
        if fields.get(name) is None and fields.get("entity_id") is None:
            errors.append(FieldError(name, f"field required ({name} or entity_id)"))
    if errors or body is None:
        raise InvalidInput(f"invalid {kind} event", errors, status=422, style=STYLE)
    return body


def _loose(raw: bytes) -> Any:
    """The body as plain JSON values, if it is JSON at all (after a failed decode)."""
    if depth_error(raw) is not None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


# -- mapping to the canonical model (worker side, pure) --------------------------------

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
    body = msgspec.convert(envelope.body, SCHEMAS[envelope.kind])
    entity_type, entity_id = _entity(body)
    happened = _event_time(body)
    is_extension = body.tool_signature == EXTENSION_SIGNATURE
    properties = {
        name: getattr(body, name) for name in _PROPERTIES if getattr(body, name) is not None
    }
    event = new_event(
        envelope,
        # No message id in the format (``event_id`` is the service's own, not per send):
        # a retry of the same body within a minute is the same event (``dedup``).
        message_id=content_id(
            envelope, [envelope.kind, msgspec.json.encode(body).decode()], unique=False
        ),
        name=body.event_type,
        type=EventType.EXTENSION if is_extension else EventType.TRACK,
        timestamp=happened,
        user_id=body.user_id,
        account_id=body.customer_id,
        entity_type=entity_type,
        entity_id=entity_id,
        recording_id=body.recording_id,
        properties=properties,
    )
    return Normalised(events=(event,))


DIALECT = Dialect(NAME, "Data Analytics Service", normalise)
