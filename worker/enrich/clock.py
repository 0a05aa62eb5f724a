"""Client clock-skew correction (the Segment rule).

A device's clock can be hours off. When the client says both when the event happened
(``timestamp``, by its clock) and when it sent the batch (``sent_at``, by the same
clock), the difference is trustworthy even if the clock is not, so the event is placed
that long before we received it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _utc(moment: datetime) -> datetime:
    # A naive datetime from a client has no stated zone: read it as UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def correct_timestamp(
    received_at: datetime,
    sent_at: datetime | None,
    timestamp: datetime | None,
    max_future: timedelta = timedelta(days=1),
) -> tuple[datetime, bool]:
    """Return ``(corrected timestamp, is_clamped)``, in UTC.

    - ``timestamp`` and ``sent_at``: ``received_at - (sent_at - timestamp)``;
    - no ``timestamp``: ``received_at``;
    - no ``sent_at``: ``timestamp`` as the client gave it.

    A result more than ``max_future`` after ``received_at`` is impossible (the event
    cannot happen after we received it, beyond in-flight slack): it becomes
    ``received_at`` and ``is_clamped`` is true.
    """
    received_at = _utc(received_at)
    if timestamp is None:
        return received_at, False
    corrected = _utc(timestamp)
    if sent_at is not None:
        try:
            corrected = received_at - (_utc(sent_at) - corrected)
        except OverflowError:
            # A sent_at/timestamp gap beyond datetime's range: no sane time to keep.
            return received_at, True
    if corrected - received_at > max_future:
        return received_at, True
    return corrected, False
