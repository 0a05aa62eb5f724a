"""Native batches (``/v1/batch`` and its aliases, a batch in ``/p.gif``'s ``d``), message by
message.

A batch is accepted message by message (:func:`decode_batch`): the valid ones are
stored, each invalid one is answered in ``rejected`` and enqueued as a
:data:`~sightline.dialects.native.REJECTED` envelope that the worker dead-letters with
its reason, so nothing a 2xx answered is lost without a trace. Only a body that is not a
batch, an empty batch or a batch of which no message is valid is refused whole (400,
413 when a message is over 32 KB); then nothing is stored and the error names every
failing field. A client retrying a batch stores nothing twice: messages deduplicate on
``messageId``.

The batch's own ``context`` is merged under each message's: the message's keys win, and
a dict both have (``library``, ``page``) is merged one level deep.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sightline.dialects.decoding import decode
from sightline.dialects.fields import edge_errors
from sightline.dialects.native import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    BatchWire,
    validate,
)
from sightline.errors import FieldError, InvalidInput, PayloadTooLarge


class Rejection(msgspec.Struct, frozen=True):
    """A batch's message that cannot be stored: its place, and why (every failing field)."""

    index: int
    errors: tuple[FieldError, ...]
    message: msgspec.Raw
    too_large: bool = False


class Batch(msgspec.Struct, frozen=True):
    wire: BatchWire
    items: list[tuple[str, msgspec.Raw]]
    """The valid messages (kind, body), the batch's ``context`` merged in."""
    rejected: list[Rejection]


def decode_batch(raw: bytes, *, fill_id: str | None = None, cookie_id: str | None = None) -> Batch:
    """A batch's valid messages and its rejected ones.

    Refused whole (400, or 413 when a message is over 32 KB) only when the body is not a
    batch, the batch is empty, or no message in it is valid: then nothing is stored and
    the error names every failing field. Otherwise the valid messages are stored and the
    invalid ones reported, so one message a client cannot fix no longer costs the batch
    (a client retrying the batch stores nothing twice: messages deduplicate on messageId).

    ``fill_id`` and ``cookie_id``: the collector's ids of the visitor (:func:`with_ids`).
    """
    wire = decode(raw, BatchWire, what="batch")
    if not wire.batch:
        raise InvalidInput("invalid batch", [FieldError("batch", "must hold at least one message")])
    if errors := edge_errors("", sentAt=wire.sentAt):
        raise InvalidInput("invalid batch", errors)
    items: list[tuple[str, msgspec.Raw]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(wire.batch):
        prefix = f"batch[{index}]."
        if fill_id is not None or cookie_id is not None:
            item = with_ids(item, fill_id, cookie_id)
        kind = _type_of(item)
        if kind not in MESSAGE_TYPES:
            why = FieldError(prefix + "type", f"must be one of {', '.join(MESSAGE_TYPES)}")
            rejected.append(Rejection(index, (why,), item))
            continue
        try:
            validate(kind, bytes(item), prefix)
        except InvalidInput as exc:
            rejected.append(Rejection(index, exc.errors, item))
            continue
        except PayloadTooLarge as exc:
            rejected.append(Rejection(index, exc.errors, item, too_large=True))
            continue
        items.append((kind, merge_context(wire.context, item)))
    if not items:
        errors = [e for r in rejected for e in r.errors]
        if any(r.too_large for r in rejected):
            raise PayloadTooLarge("invalid batch: no message can be stored", errors)
        raise InvalidInput("invalid batch: no message can be stored", errors)
    return Batch(wire, items, rejected)


class _RejectedBody(msgspec.Struct, frozen=True):
    errors: tuple[FieldError, ...]
    message: msgspec.Raw


def rejected_body(rejection: Rejection) -> msgspec.Raw:
    """The body of a :data:`REJECTED` envelope: the message as sent, and why it was refused."""
    if len(rejection.message) > MAX_MESSAGE_BYTES:  # keep the reason, not the oversized body
        return msgspec.Raw(_encode(_RejectedBody(rejection.errors, msgspec.Raw(b"null"))))
    return msgspec.Raw(_encode(_RejectedBody(rejection.errors, rejection.message)))


_encode = msgspec.json.Encoder().encode


def merge_context(batch_context: dict[str, Any] | None, item: msgspec.Raw) -> msgspec.Raw:
    """``item`` with the batch's ``context`` under its own (its keys win; dicts both have
    are merged one level deep)."""
    if not batch_context:
        return item
    message = msgspec.json.decode(item)
    own = message.get("context")
    merged = dict(batch_context)
    if isinstance(own, dict):
        for key, value in own.items():
            under = merged.get(key)
            merged[key] = (
                {**under, **value} if isinstance(under, dict) and isinstance(value, dict) else value
            )
    message["context"] = merged
    return msgspec.Raw(_encode(message))


def with_ids(
    item: msgspec.Raw, fill_id: str | None, cookie_id: str | None, kind: str | None = None
) -> msgspec.Raw:
    """A message with the collector's ids of its visitor (``sightline.identity``).

    ``fill_id`` (a ``cookieless`` product's id for the visitor today): a message with
    neither ``userId`` nor ``anonymousId`` gets it as ``anonymousId`` (and loses its
    ``context.sessionId``, a page's own with nothing kept on the device), and an ``alias``
    without ``previousId`` gets it as ``previousId`` (the consent upgrade: the new
    persistent id takes over the visit's cookieless one). ``cookie_id`` (the ``sl_id``
    cookie's id): it replaces the ``anonymousId`` the message has (and a ``previousId``
    equal to that), as the older id. ``kind``: the message's type when the body does not
    say it (``/v1/<type>``). The message is re-encoded only when it changes.
    """
    try:
        message = msgspec.json.decode(item)
    except msgspec.DecodeError:
        return item
    if not isinstance(message, dict):
        return item
    changed = False
    anonymous = message.get("anonymousId")
    if (
        cookie_id is not None
        and isinstance(anonymous, str)
        and anonymous
        and anonymous != cookie_id
    ):
        message["anonymousId"] = cookie_id
        if message.get("previousId") == anonymous:
            message["previousId"] = cookie_id
        changed = True
    if fill_id is not None:
        if not message.get("userId") and not message.get("anonymousId"):
            message["anonymousId"] = fill_id
            context = message.get("context")
            if isinstance(context, dict) and "sessionId" in context:
                # a device that keeps nothing has a new session id on every page: the
                # worker sessionises the visitor's events instead
                message["context"] = {k: v for k, v in context.items() if k != "sessionId"}
            changed = True
        if (kind or message.get("type")) == "alias" and not message.get("previousId"):
            message["previousId"] = fill_id
            changed = True
    return msgspec.Raw(_encode(message)) if changed else item


class _IdsOnly(msgspec.Struct):
    anonymousId: Any = None


def anonymous_id_of(item: msgspec.Raw) -> str | None:
    """A message's ``anonymousId`` when it is a string."""
    try:
        value = msgspec.json.decode(item, type=_IdsOnly).anonymousId
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) and value else None


class _KeyOnly(msgspec.Struct):
    writeKey: Any = None


def write_key_of(raw: bytes) -> str | None:
    """A body's ``writeKey`` when it is a JSON object with one (``None`` otherwise)."""
    try:
        key = msgspec.json.decode(raw, type=_KeyOnly).writeKey
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None
    return key if isinstance(key, str) and key else None


class _TypeOnly(msgspec.Struct):
    type: str | None = None


def _type_of(raw: msgspec.Raw) -> str | None:
    try:
        return msgspec.json.decode(raw, type=_TypeOnly).type
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None
