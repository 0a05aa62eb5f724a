"""Events as NDJSON or CSV, in chunks: ``sightline events export`` and ``/api/v1/events/export``.

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) are prefixed with ``'``; ``properties`` and
``context`` are JSON text in their cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import msgspec

from sightline.model import Event

FORMATS = ("ndjson", "csv")
MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = (
    "id",
    "timestamp",
    "received_at",
    "product_id",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "account_id",
    "session_id",
    "message_id",
    "dialect",
    "is_bot",
    "properties",
    "context",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_json = msgspec.json.Encoder()


def safe_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it and never runs it."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _row(event: Event) -> list[str]:
    return [
        safe_cell(value)
        for value in (
            event.id,
            event.timestamp.isoformat(),
            event.received_at.isoformat(),
            event.product_id,
            event.type.value,
            event.name,
            event.user_id or "",
            event.anonymous_id or "",
            event.account_id or "",
            event.session_id or "",
            event.message_id,
            event.dialect,
            "true" if event.is_bot else "false",
            _json.encode(event.properties).decode(),
            _json.encode(event.context).decode(),
        )
    ]


def chunks(events: Iterable[Event], format: str, *, per_chunk: int = 500) -> Iterator[bytes]:
    """The export of ``events`` in ``format``, ``per_chunk`` events per bytes chunk."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if format == "ndjson":
        lines: list[bytes] = []
        for event in events:
            lines.append(_json.encode(event) + b"\n")
            if len(lines) >= per_chunk:
                yield b"".join(lines)
                lines = []
        if lines:
            yield b"".join(lines)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for count, event in enumerate(events, 1):
        writer.writerow(_row(event))
        if count % per_chunk == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()
