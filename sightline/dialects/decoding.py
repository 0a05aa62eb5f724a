"""Decoding a request body into a dialect's wire schema: decoding is validation.

Every dialect decodes through :func:`decode`, so every kind of malformed input
(bad JSON, wrong types, missing fields, invalid UTF-8) becomes the same precise
400 naming the field.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar, get_args

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


def decode(
    raw: bytes,
    schema: type[T],
    *,
    what: str,
    prefix: str = "",
    every_field: bool = False,
    **error: Any,
) -> T:
    """``raw`` as ``schema``, or :class:`InvalidInput` naming the failing field.

    msgspec stops at the first failing field; with ``every_field`` (``schema`` a
    struct) a body that is JSON but not ``schema`` is checked field by field, so
    the error names every failing one (:func:`every_field_error`).
    """
    too_deep = depth_error(raw, prefix)
    if too_deep is not None:
        raise InvalidInput(f"invalid {what}", [too_deep], **error)
    try:
        return msgspec.json.decode(raw, type=schema)
    except msgspec.ValidationError as exc:
        first = field_error(exc, prefix)
        found = every_field_error(raw, schema, prefix) if every_field else []
        raise InvalidInput(f"invalid {what}", found or [first], **error) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"invalid {what}", [field_error(exc, prefix)], **error) from None
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8 (byte {exc.start})"
        raise InvalidInput(
            f"invalid {what}", [FieldError(prefix.rstrip(".") or "$", reason)], **error
        ) from None


def every_field_error(raw: bytes, schema: Any, prefix: str = "") -> list[FieldError]:
    """Every failing field of the JSON document ``raw`` against the struct ``schema``.

    The document is read loosely (plain JSON values), then each field of the struct
    is converted on its own, and nested structs field by field, so an item with three
    bad fields gets three errors. Only called once a strict decode failed.
    """
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return []
    return _errors(document, schema, prefix)


def _struct_in(annotation: Any) -> Any:
    """The struct type ``annotation`` is, or is optionally (``S | None``), else ``None``."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    members = [a for a in get_args(annotation) if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type):
        return members[0] if issubclass(members[0], msgspec.Struct) else None
    return None


def _errors(value: Any, schema: Any, at: str) -> list[FieldError]:
    struct = _struct_in(schema)
    if struct is None or not isinstance(value, dict):
        try:
            msgspec.convert(value, schema)
        except msgspec.ValidationError as exc:
            error = field_error(exc)
            inner = "" if error.field == "$" else error.field
            base = at.rstrip(".")
            field = base + inner if inner.startswith("[") or not base else f"{base}.{inner}"
            return [FieldError(field.rstrip(".") or "$", error.reason)]
        return []
    errors: list[FieldError] = []
    known = set()
    for info in msgspec.structs.fields(struct):
        known.add(info.encode_name)
        if info.encode_name not in value:
            if info.required:
                reason = f"Object missing required field {info.encode_name}"
                errors.append(FieldError(at + info.encode_name, reason))
            continue
        errors += _errors(value[info.encode_name], info.type, f"{at}{info.encode_name}.")
    if struct.__struct_config__.forbid_unknown_fields:
        errors += [
            FieldError(at.rstrip(".") or "$", f"Object contains unknown field {name}")
            for name in value
            if name not in known
        ]
    return errors
