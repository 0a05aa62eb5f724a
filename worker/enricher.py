"""Enrichment of normalised records, shared by every dialect.

Applied per envelope after its dialect mapped it: event ids, UTC times and
clock-skew correction, the product's IP policy and enabled flag.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from collector.envelope import Envelope
from sightline.ids import uuid7
from sightline.model import Event, IpHandling, Normalised
from sightline.store.products import Product


def utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (as Segment does); aware ones converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Enricher:
    def __call__(self, normalised: Normalised, product: Product, envelope: Envelope) -> Normalised:
        events = tuple(self.enrich_event(e, product) for e in normalised.events)
        return msgspec.structs.replace(normalised, events=events)

    def enrich_event(self, event: Event, product: Product) -> Event:
        received = utc(event.received_at)
        timestamp = utc(event.timestamp)
        context: dict[str, Any] = dict(event.context)
        context["ip"] = _apply_ip_policy(context.get("ip"), product.ip_handling)
        return msgspec.structs.replace(
            event,
            id=event.id or uuid7(int(received.timestamp() * 1000)),
            timestamp=timestamp,
            received_at=received,
            sent_at=utc(event.sent_at) if event.sent_at else None,
            original_timestamp=utc(event.original_timestamp) if event.original_timestamp else None,
            context=context,
            is_unused=not product.is_enabled,
        )


def _apply_ip_policy(ip: object, policy: IpHandling) -> str | None:
    if not isinstance(ip, str) or policy is IpHandling.NONE:
        return None
    return ip
