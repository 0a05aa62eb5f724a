"""Decoding a request body into a dialect's wire schema: decoding is validation.

Every dialect decodes through :func:`decode`, so every kind of malformed input
(bad JSON, wrong types, missing fields, invalid UTF-8) becomes the same precise
400 naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from sightline.errors import FieldError, InvalidInput, field_error

T = TypeVar("T")


def decode(raw: bytes, schema: type[T], *, what: str, prefix: str = "", **error: Any) -> T:
    """``raw`` as ``schema``, or :class:`InvalidInput` naming the failing field."""
    try:
        return msgspec.json.decode(raw, type=schema)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"invalid {what}", [field_error(exc, prefix)], **error) from None
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8 (byte {exc.start})"
        raise InvalidInput(
            f"invalid {what}", [FieldError(prefix.rstrip(".") or "$", reason)], **error
        ) from None
