"""What every dialect module provides, and the one way to build a canonical event.

A dialect module is pure: its wire schema (decoding is validation), the rules a
schema cannot say, and ``normalise(envelope) -> Normalised``. It declares itself
as a :class:`Dialect`; ``sightline.dialects`` lists them all, and the collector
(endpoints), the worker (normalising) and the docs read that one registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sightline.dialects.fields import MAX_ID
from sightline.envelope import Envelope
from sightline.ids import derived_id, uuid7
from sightline.model import AttributeOp, AttributeOpKind, Event, EventType, Normalised

Normaliser = Callable[[Envelope], Normalised]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    """What envelopes and stored events say they came from (``Envelope.dialect``)."""
    title: str
    """The wire format's name as its users know it (docs, OpenAPI tags)."""
    normalise: Normaliser


def client_context(
    ip: str | None, user_agent: str | None, fallback_ip: str | None, fallback_agent: str | None
) -> dict[str, Any]:
    """The canonical ``context.ip`` / ``context.userAgent`` of an event.

    What the body says about the client wins (a server forwarding a device's event
    knows the device's address, Pyze's ``context.ip``); otherwise the HTTP peer's,
    which is Segment's rule and what the native dialect does. Every dialect builds
    these two keys here, so the same page view has the same context whatever
    dialect carried it.
    """
    return {
        "ip": ip if ip is not None else fallback_ip,
        "userAgent": user_agent if user_agent is not None else fallback_agent,
    }


def new_event(
    envelope: Envelope,
    *,
    name: str,
    type: EventType,
    index: int = 0,
    message_id: str | None = None,
    timestamp: datetime | None = None,
    sent_at: datetime | None = None,
    context: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """The ``index``-th event of ``envelope``, with what only the envelope knows filled in.

    - ``id``: time-ordered (UUIDv7 of the receive time);
    - ``message_id``: the client's idempotency key, else derived from the envelope id and
      the event's place in it, so replaying an envelope stores nothing twice;
    - ``timestamp``: the client's time (kept as ``original_timestamp`` for the worker's
      clock-skew correction), else the receive time;
    - ``sent_at``: the message's own, else the request's;
    - ``context``: ``ip`` / ``userAgent`` of the HTTP peer unless the dialect gives one;
    - ``product_id``, ``received_at`` and ``dialect`` from the envelope;
    - ``entity_type`` / ``entity_id`` and ``recording_id`` from the properties
      ``lead_id`` / ``contact_id`` and ``recording_id`` when the dialect set none
      (:func:`entity_from_properties`).
    """
    properties = fields.get("properties")
    if properties:
        entity_from_properties(properties, fields)
    received = envelope.received_at
    return Event(
        id=uuid7(int(received.timestamp() * 1000)),
        message_id=message_id or derived_id(envelope.id, str(index)),
        product_id=envelope.product_id,
        name=name,
        type=type,
        timestamp=timestamp or received,
        original_timestamp=timestamp,
        received_at=received,
        sent_at=sent_at or envelope.sent_at,
        context=context
        if context is not None
        else client_context(None, None, envelope.ip, envelope.user_agent),
        dialect=envelope.dialect,
        **fields,
    )


ENTITY_PROPERTIES = (("lead_id", "lead"), ("contact_id", "contact"))
"""Properties that say which Data Analytics Service entity an event of any dialect is about."""


def _entity_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_ID else None


def entity_from_properties(properties: dict[str, Any], fields: dict[str, Any]) -> None:
    """Fill ``fields``' entity and recording from ``properties``, where the dialect set none.

    An event sent through ``/v1/track``, Fuzy, Pyze or Gameball with the property
    ``lead_id`` (or ``contact_id``) is about that lead (contact), and ``recording_id``
    is its recording: the Data Analytics Service's search finds it with the events
    its own endpoints wrote. Values that are not ids (objects, text too long for an
    id) stay properties only.
    """
    if fields.get("entity_id") is None:
        for name, kind in ENTITY_PROPERTIES:
            entity = _entity_id(properties.get(name))
            if entity is not None:
                fields["entity_type"], fields["entity_id"] = kind, entity
                break
    if fields.get("recording_id") is None:
        recording = _entity_id(properties.get("recording_id"))
        if recording is not None:
            fields["recording_id"] = recording


def trait_ops(traits: dict[str, Any]) -> tuple[AttributeOp, ...]:
    """Traits as profile operations: each value set, and a ``null`` removes the attribute."""
    return tuple(
        AttributeOp(k, AttributeOpKind.SET if v is not None else AttributeOpKind.REMOVE, v)
        for k, v in traits.items()
    )
