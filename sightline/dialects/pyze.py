"""The Pyze dialect: the Enterprise Events API (seeds/001_52436bf4e01addcf.txt).

``POST /v1/events`` takes exactly the page's fields and answers exactly its
codes: 202 accepted; 400 naming the missing or invalid field (``"userId" is not
provided``); 401 for an unknown ``appKey``; 403 when the request also carries a
key (``Authorization`` / ``X-API-Key``) for another app than ``appKey``. Unknown
fields are a 400 too: "exactly the page's fields", and a typo'd ``eventtime``
silently dropped would store the event at the wrong time. The table has no 413
nor 415: a body over the size limit (32 KB an event) or in an unknown
``Content-Encoding`` is a 400 in the same shape, saying so.

For events sent from a server the device's ``context.userAgent`` and
``context.ip`` are recorded, not the server's; ``eventTime`` and ``sentAt`` take
every ISO-8601 form (``2020-06-03``: midnight UTC; basic ``20200603T170348Z``;
``2020-06-03T17:03Z`` without seconds; no offset: UTC); ``sentAt`` travels as the event's
``sent_at`` so the worker's clock-skew rule corrects ``eventTime``; ``messageId``
is the idempotency key.

The User Profiles API is ``sightline.dialects.pyze_profiles``; both are dialect
``pyze`` (envelope kinds ``event`` and ``profile``), served by ``collector.endpoints.pyze``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from sightline.dialects import pyze_profiles as profiles
from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import decode
from sightline.dialects.fields import (
    Id,
    IsoTime,
    Name,
    Properties,
    Text,
    is_ip_address,
    parse_instant,
)
from sightline.dialects.pyze_profiles import pyze_errors
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import EventType, Normalised

NAME = "pyze"
MAX_EVENT_BYTES = 32 * 1024
EVENT_KIND = "event"


# -- wire schema -----------------------------------------------------------------------


class PyzeContext(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    userAgent: Text | None = None
    ip: Text | None = None


class PyzeEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/events``: the page's table, nothing more."""

    type: Literal["event"]
    event: Name
    userId: Id
    eventTime: IsoTime
    appKey: Id
    context: PyzeContext | None = None
    messageId: Id | None = None
    sentAt: IsoTime | None = None
    attributes: Properties | None = None


# -- validation ------------------------------------------------------------------------


def validate_event(raw: bytes) -> PyzeEvent:
    try:
        event = decode(raw, PyzeEvent, what="event")
    except InvalidInput as exc:
        raise pyze_errors(exc) from None
    errors: list[FieldError] = []
    for name, value in (("eventTime", event.eventTime), ("sentAt", event.sentAt)):
        if value is not None and parse_instant(value) is None:
            errors.append(FieldError(name, "is not an ISO-8601 date-time"))
    ip = event.context.ip if event.context is not None else None
    if ip is not None and not is_ip_address(ip):
        errors.append(FieldError("context.ip", "is not an IP address"))
    if errors:
        first = errors[0]
        raise InvalidInput(f'Not a valid input: "{first.field}" {first.reason}', errors)
    return event


def instant(text: str) -> datetime:
    """A validated ``eventTime`` / ``sentAt`` as a datetime (UTC when it has no offset)."""
    moment = parse_instant(text)
    if moment is None:  # validated when accepted: only a changed rule can get here
        raise ValueError(f"{text!r} is not an ISO-8601 date-time")
    return moment


# -- mapping to the canonical model (worker side, pure) --------------------------------


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == profiles.PROFILE_KIND:
        return profiles.normalise_profile(envelope)
    event_body = msgspec.convert(envelope.body, PyzeEvent)
    ctx = event_body.context or PyzeContext()
    event = new_event(
        envelope,
        message_id=event_body.messageId,
        name=event_body.event,
        type=EventType.TRACK,
        timestamp=instant(event_body.eventTime),
        sent_at=instant(event_body.sentAt) if event_body.sentAt is not None else None,
        user_id=event_body.userId,
        properties=dict(event_body.attributes or {}),
        context=client_context(ctx.ip, ctx.userAgent, envelope.ip, envelope.user_agent),
    )
    return Normalised(events=(event,))


DIALECT = Dialect(NAME, "Pyze", normalise)
