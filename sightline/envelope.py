"""The versioned envelope that carries one accepted payload from collector to worker.

The collector wraps what it accepted, byte for byte (``body`` is the raw JSON it
validated), with what only the collector knows: when, from where, for which
product. Workers refuse versions they do not know instead of guessing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from sightline.model import KeyKind

ENVELOPE_VERSION = 1
MAX_USER_AGENT = 1024
"""The longest user agent kept (real ones are under 500 characters): the collector cuts
the header to this before it travels, the worker any user agent a body carries."""


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    v: int = ENVELOPE_VERSION
    id: str
    dialect: str
    kind: str
    """What the payload is within its dialect: ``track``, ``identify``, ``profile`` ..."""
    product_id: str
    received_at: datetime
    ip: str | None = None
    """The client's address as the product keeps it: whole (``full``), truncated, or
    absent (``none``); the collector applies the product's IP handling before enqueueing."""
    geo: dict[str, str] | None = None
    """Where the client is (country, region, city: ``sightline.geo.COARSE_FIELDS``), looked
    up by the collector from the whole address for a product that does not keep it; ``{}``
    when nowhere is known. ``None`` (full addresses, envelopes from before this field): the
    worker locates ``ip`` itself."""
    user_agent: str | None = None
    origin: str | None = None
    sent_at: datetime | None = None
    """The client's send time for the whole request, when it gave one (clock-skew correction)."""
    product_enabled: bool | None = None
    """The product's enabled flag when the collector accepted the payload: the worker marks
    events unused by it, so an event follows the switch that preceded it, however stale
    the worker's product cache. ``None`` (envelopes from before this field): the worker
    reads the product's current flag."""
    key: KeyKind | None = None
    """The kind of key the collector authenticated the payload with: ``write`` (public)
    or ``server`` (secret); the worker applies the write-key policy to ``write``
    (``sightline/store/effects.py``). ``None``: an envelope from a collector before this
    field (queued across an upgrade, or an old dead letter replayed), applied as it was
    accepted then, without the policy; every collector since sets it."""
    body: Any = None
    """The validated payload: ``msgspec.Raw`` in the collector, decoded JSON in the worker."""


def envelope_from_job(data: Any) -> Envelope:
    """Decode one envelope as the worker receives it (plain JSON values)."""
    return msgspec.convert(data, Envelope)
