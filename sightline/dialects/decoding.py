"""Decoding a request body into a dialect's wire schema: decoding is validation.

Every dialect decodes through :func:`decode`, so every kind of malformed input
(bad JSON, wrong types, missing fields, invalid UTF-8) becomes the same precise
400 naming the field.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from sightline.errors import FieldError, InvalidInput, field_error

T = TypeVar("T")

MAX_DEPTH = 64
"""How deeply a JSON document may nest objects and arrays. The deepest a real client
sends is a handful of levels; the decoder itself (and the worker, which decodes the
same body inside an RQ job with a deeper stack) would fail near 1,000."""
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST = re.compile(rb"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")


def depth_error(raw: bytes, prefix: str = "") -> FieldError | None:
    """Why ``raw`` nests too deeply, if it does; cheap for the common small document.

    Fewer openers than the limit cannot nest deeper than it: that count is a C-speed
    scan. A document with more (a batch) is measured with its strings removed, by
    deleting its innermost brackets level by level (one C-speed pass per level).
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return None
    text = _STRING.sub(b"", raw)
    for _ in range(MAX_DEPTH):
        text, removed = _INNERMOST.subn(b"", text)
        if not removed:
            return None
    if not _INNERMOST.search(text):
        return None
    return FieldError(prefix.rstrip(".") or "$", f"nested deeper than {MAX_DEPTH} levels")


def decode(raw: bytes, schema: type[T], *, what: str, prefix: str = "", **error: Any) -> T:
    """``raw`` as ``schema``, or :class:`InvalidInput` naming the failing field."""
    too_deep = depth_error(raw, prefix)
    if too_deep is not None:
        raise InvalidInput(f"invalid {what}", [too_deep], **error)
    try:
        return msgspec.json.decode(raw, type=schema)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"invalid {what}", [field_error(exc, prefix)], **error) from None
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8 (byte {exc.start})"
        raise InvalidInput(
            f"invalid {what}", [FieldError(prefix.rstrip(".") or "$", reason)], **error
        ) from None
