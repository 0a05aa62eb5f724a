"""Idempotency keys derived from content, for wire formats that carry no message id.

Matomo's tracking requests and GA4's Measurement Protocol events name no event id, so a
client that retries a request it thinks was lost sends the same content again, under a
new envelope. ``new_event``'s envelope-derived id cannot see that; this key can: it is
a hash of what identifies the event (visitor, page, event fields, the client's own
random or time field) within a time window.

The window is the only judgement in it. Where the content carries something that is
unique per send (Matomo's ``rand``, a client timestamp), that is the window: a retry
repeats it, a new event does not. Without one, the receive time's :data:`WINDOW`
bucket is: a retry that lands in the same minute is the same event, while the same
content sent again a minute later is a new one (two identical events from one visitor
within the same minute without any time field are stored once: the price of having no
id). A retry that straddles a bucket boundary is stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sightline.envelope import Envelope
from sightline.ids import derived_id

WINDOW = timedelta(seconds=60)


def content_id(envelope: Envelope, parts: Iterable[str | None], *, unique: bool) -> str:
    """The message id of an event known by ``parts`` (its dialect's identifying fields).

    ``unique``: the parts already hold a per-send value (a random nonce, a timestamp), so
    no receive-time window is added.
    """
    window = "" if unique else str(int(envelope.received_at.timestamp() // WINDOW.seconds))
    fields = [envelope.dialect, envelope.product_id, window, *(p or "" for p in parts)]
    return derived_id(*fields)
