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
    - ``product_id``, ``received_at`` and ``dialect`` from the envelope.
    """
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


def trait_ops(traits: dict[str, Any]) -> tuple[AttributeOp, ...]:
    """Traits as profile operations: each value set, and a ``null`` removes the attribute."""
    return tuple(
        AttributeOp(k, AttributeOpKind.SET if v is not None else AttributeOpKind.REMOVE, v)
        for k, v in traits.items()
    )
