"""Content-derived message ids (``sightline.dialects.dedup``): a retry is the same event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from sightline.dialects.dedup import WINDOW, content_id
from sightline.envelope import Envelope

AT = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)


def envelope(received_at: datetime, product: str = "p1", dialect: str = "matomo") -> Envelope:
    return Envelope(
        id="e", dialect=dialect, kind="request", product_id=product, received_at=received_at
    )


def test_the_same_content_in_the_same_window_is_one_event() -> None:
    parts = ["site", "visitor", "/pricing"]
    first = content_id(envelope(AT), parts, unique=False)
    assert content_id(envelope(AT + timedelta(seconds=30)), parts, unique=False) == first
    assert content_id(envelope(AT + WINDOW), parts, unique=False) != first  # sent again later
    assert content_id(envelope(AT), [*parts[:2], "/other"], unique=False) != first


def test_a_per_send_value_replaces_the_window() -> None:
    parts = ["site", "visitor", "/pricing", "rand=4711"]
    later = msgspec.structs.replace(envelope(AT), received_at=AT + timedelta(hours=1))
    assert content_id(envelope(AT), parts, unique=True) == content_id(later, parts, unique=True)


def test_products_and_dialects_never_share_an_id() -> None:
    parts = ["same"]
    ids = {
        content_id(envelope(AT), parts, unique=True),
        content_id(envelope(AT, product="p2"), parts, unique=True),
        content_id(envelope(AT, dialect="ga4"), parts, unique=True),
    }
    assert len(ids) == 3
