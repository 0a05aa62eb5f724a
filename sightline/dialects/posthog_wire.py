"""PostHog's capture request: its transport (below) and its JSON (:func:`validate`).

PostHog's capture endpoints (``/e``, ``/i/v0/e``, ``/capture``, ``/track``, ``/engage``,
``/batch``) take the same events in every envelope its SDKs have used over the years:

- a JSON body (``application/json`` or ``text/plain``): posthog-python, curl;
- a gzip body, announced by ``?compression=gzip|gzip-js`` or not at all: posthog-js
  sends ``gzip-js`` bodies as ``text/plain`` and drops the query parameter, so a body
  starting with gzip's magic bytes is inflated whatever the parameter says (as
  PostHog's capture does); ``Content-Encoding: gzip`` is inflated earlier, by
  ``collector.bodies.read_body``, as on every endpoint;
- a form body ``data=<payload>[&compression=...]`` (posthog-js's ``sendBeacon`` and
  ``base64`` mode), or ``GET ?data=<payload>&compression=...``;
- ``compression=base64``, or a payload that is not JSON: base64 (standard or URL-safe,
  padding optional) of the JSON text;
- ``compression=lz64``: lz-string's ``compressToBase64`` (old posthog-js), decoded with
  the ``lzstring`` package. lz-string can expand quadratically, and the package is pure
  Python, so an lz64 payload may be at most :data:`MAX_LZ64_BYTES` (about 180 KB of
  JSON) and is decoded off the event loop by the endpoint.

Every decoding failure is a 400 naming ``compression`` or ``data``; what a payload
inflates to is capped by the endpoint's limit (413).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import lzstring
import msgspec

from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ID, Id, Name
from sightline.errors import FieldError, InvalidInput, PayloadTooLarge

NAME = "posthog"
KIND = "event"
MAX_BODY_BYTES = 1024 * 1024
"""A capture request as sent, and again as its transport decodes it."""
MAX_EVENTS = 2000
GZIP_MAGIC = b"\x1f\x8b"
MAX_LZ64_BYTES = 16 * 1024
COMPRESSIONS = ("gzip", "gzip-js", "base64", "lz64")
FORM = "application/x-www-form-urlencoded"

Inflate = Callable[[bytes], bytes]
"""gzip inflation under the collector's caps (``collector.bodies.inflate``)."""


def _invalid(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"invalid {field}: {reason}", [FieldError(field, reason)])


def compression_of(value: str | None) -> str | None:
    """The ``compression`` parameter, checked: absent, empty or one of :data:`COMPRESSIONS`."""
    if not value:
        return None
    lowered = value.strip().lower()
    if lowered not in COMPRESSIONS:
        raise _invalid("compression", f"must be one of {', '.join(COMPRESSIONS)}")
    return lowered


def form_fields(raw: bytes) -> dict[str, str]:
    """A form body's fields (the last of each name), or 400 when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("data", f"the form is not valid UTF-8 (byte {exc.start})") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _looks_like_json(data: bytes) -> bool:
    start = data.lstrip()[:1]
    return start in (b"{", b"[")


def _base64(data: bytes) -> bytes:
    text = b"".join(data.split()).replace(b"-", b"+").replace(b"_", b"/")
    text += b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("data", "neither JSON nor base64") from None


def _lz64(data: bytes, limit: int) -> bytes:
    if len(data) > MAX_LZ64_BYTES:
        raise PayloadTooLarge(
            f"an lz64 payload may be at most {MAX_LZ64_BYTES} bytes",
            [FieldError("compression", f"lz64 payload over {MAX_LZ64_BYTES} bytes")],
        )
    try:
        text = lzstring.LZString().decompressFromBase64(data.decode("ascii").strip())
    except Exception:  # the package raises whatever its input makes it raise
        text = None
    if not text:
        raise _invalid("compression", "the payload is not lz-string base64 (lz64)")
    # lz-string works on UTF-16 code units: astral characters come out as surrogate pairs.
    try:
        decoded = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le").encode("utf-8")
    except UnicodeError:
        raise _invalid("compression", "the lz64 payload is not valid text") from None
    if len(decoded) > limit:
        raise PayloadTooLarge(
            f"lz64 payload inflates past the limit of {limit} bytes",
            [FieldError("compression", f"inflated payload exceeds {limit} bytes")],
        )
    return decoded


def decode_payload(data: bytes, compression: str | None, inflate: Inflate, limit: int) -> bytes:
    """The JSON text of one capture payload, whatever envelope it came in."""
    if not data.strip():
        raise _invalid("data", "the payload is empty")
    if data[:2] == GZIP_MAGIC:
        return inflate(data)
    if compression in ("gzip", "gzip-js"):
        # Announced but not gzip: posthog-js falls back to plain JSON when gzip fails.
        if _looks_like_json(data):
            return data
        raise _invalid("compression", "the body is not gzip data")
    if compression == "lz64":
        return _lz64(data, limit)
    if compression == "base64" or not _looks_like_json(data):
        decoded = _base64(data)
        return inflate(decoded) if decoded[:2] == GZIP_MAGIC else decoded
    return data


def request_payload(
    raw: bytes | None,
    query: dict[str, str],
    content_type: str,
    inflate: Inflate,
    limit: int,
) -> bytes:
    """The JSON text a capture request carries: its body (POST) or its ``data`` (GET).

    A form body's own ``compression`` field wins over the query's.
    """
    compression = query.get("compression")
    if raw is None:  # GET
        data = query.get("data")
        if data is None:
            raise _invalid("data", "a GET capture carries its events in the data parameter")
        payload = data.encode("utf-8")
    elif content_type.split(";", 1)[0].strip().lower() == FORM or raw.startswith(b"data="):
        fields = form_fields(raw)
        if "data" not in fields:
            raise _invalid("data", "a form body carries its events in the data field")
        payload = fields["data"].encode("utf-8")
        compression = fields.get("compression") or compression
    else:
        payload = raw
    return decode_payload(payload, compression_of(compression), inflate, limit)


# -- the events' JSON ---------------------------------------------------------------


DistinctId = Id | int


Offset = Annotated[int, msgspec.Meta(ge=0, le=366 * 86_400_000)]
"""Milliseconds before the request that the event happened (a year at most)."""


class PostHogEvent(msgspec.Struct, kw_only=True):
    """One captured event."""

    event: Name
    distinct_id: DistinctId | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    offset: Offset | None = None
    uuid: Id | None = None
    token: str | None = None
    api_key: str | None = None
    dollar_token: str | None = msgspec.field(default=None, name="$token")
    set: dict[str, Any] | None = msgspec.field(default=None, name="$set")
    set_once: dict[str, Any] | None = msgspec.field(default=None, name="$set_once")


class CaptureBatch(msgspec.Struct, kw_only=True):
    """``{"api_key", "batch": [...], "sent_at"}``: the body posthog-js and posthog-python send."""

    batch: list[PostHogEvent]
    api_key: str | None = None
    token: str | None = None
    sent_at: datetime | None = None
    historical_migration: bool | None = None


class _BatchHead(msgspec.Struct, kw_only=True):
    batch: list[msgspec.Raw] | None = None
    api_key: str | None = None
    token: str | None = None
    sent_at: datetime | None = None


class Capture(msgspec.Struct, kw_only=True):
    """A validated capture request: its token, send time and events (raw JSON each)."""

    token: str | None
    sent_at: datetime | None
    events: list[bytes]


def text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _event_token(event: PostHogEvent) -> str | None:
    return event.token or event.api_key or event.dollar_token or text(event.properties.get("token"))


def validate(raw: bytes) -> Capture:
    """Decode a capture payload's JSON text: 400 naming the field, nothing half-accepted."""
    if raw.lstrip()[:1] == b"[":
        head = _BatchHead(batch=decode(raw, list[msgspec.Raw], what="capture request"))
        prefix = ""
    else:
        head = decode(raw, _BatchHead, what="capture request")
        prefix = "batch"
        if head.batch is None:
            head.batch, prefix = [msgspec.Raw(raw)], ""
    if not head.batch:
        raise InvalidInput("invalid capture request", [FieldError("batch", "no events")])
    if len(head.batch) > MAX_EVENTS:
        raise InvalidInput(
            "invalid capture request", [FieldError("batch", f"more than {MAX_EVENTS} events")]
        )
    batch_token = head.api_key or head.token
    tokens: set[str] = set()
    errors: list[FieldError] = []
    for index, item in enumerate(head.batch):
        where = f"{prefix}[{index}]" if prefix or len(head.batch) > 1 else ""
        try:
            event = decode(bytes(item), PostHogEvent, what="event", prefix=f"{where}.")
        except InvalidInput as exc:
            errors.extend(exc.errors)
            continue
        distinct_id = distinct_id_of(event)
        if distinct_id is None or len(distinct_id) > MAX_ID:
            reason = "is required" if distinct_id is None else f"longer than {MAX_ID} characters"
            errors.append(FieldError(f"{where}.distinct_id".lstrip("."), reason))
        event_token = _event_token(event)
        if event_token is not None:
            tokens.add(event_token)
    if batch_token is None and len(tokens) > 1:
        errors.append(FieldError("api_key", "the events name different project tokens"))
    if errors:
        raise InvalidInput("invalid capture request", errors)
    token = batch_token or next(iter(tokens), None)
    return Capture(token=token, sent_at=head.sent_at, events=[bytes(e) for e in head.batch])


def distinct_id_of(event: PostHogEvent) -> str | None:
    return text(event.distinct_id) or text(event.properties.get("distinct_id"))
