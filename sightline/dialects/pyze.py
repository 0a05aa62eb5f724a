"""The Pyze dialect: the Enterprise Events API (seeds/001_52436bf4e01addcf.txt).

``POST /v1/events`` takes exactly the page's fields and answers exactly its
codes: 202 accepted; 400 naming the missing or invalid field (``"userId" is not
provided``); 401 for an unknown ``appKey``; 403 when the request also carries a
key (``Authorization`` / ``X-API-Key``) for another app than ``appKey``. Unknown
fields are a 400 too: "exactly the page's fields", and a typo'd ``eventtime``
silently dropped would store the event at the wrong time.

For events sent from a server the device's ``context.userAgent`` and
``context.ip`` are recorded, not the server's; ``sentAt`` travels as the event's
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
from sightline.dialects.fields import Id, Name, Properties, Text, is_ip_address
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
    eventTime: datetime
    appKey: Id
    context: PyzeContext | None = None
    messageId: Id | None = None
    sentAt: datetime | None = None
    attributes: Properties | None = None


# -- validation ------------------------------------------------------------------------


def validate_event(raw: bytes) -> PyzeEvent:
    try:
        event = decode(raw, PyzeEvent, what="event")
    except InvalidInput as exc:
        raise pyze_errors(exc) from None
    ip = event.context.ip if event.context is not None else None
    if ip is not None and not is_ip_address(ip):
        raise InvalidInput(
            'Not a valid input: "context.ip" is not an IP address',
            [FieldError("context.ip", "is not an IP address")],
        )
    return event


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
        timestamp=event_body.eventTime,
        sent_at=event_body.sentAt,
        user_id=event_body.userId,
        properties=dict(event_body.attributes or {}),
        context=client_context(ctx.ip, ctx.userAgent, envelope.ip, envelope.user_agent),
    )
    return Normalised(events=(event,))


DIALECT = Dialect(NAME, "Pyze", normalise)
