"""Typed profile attributes and the operations every dialect uses to change them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import msgspec

from sightline.model import AttributeOp, AttributeOpKind, AttributeType


class Attribute(msgspec.Struct, frozen=True):
    type: AttributeType
    value: Any


class ProfileOpError(ValueError):
    """An operation that does not fit the attribute it targets (e.g. increment a string)."""


def infer_type(value: Any) -> AttributeType:
    if isinstance(value, bool):
        return AttributeType.BOOL
    if isinstance(value, int):
        return AttributeType.INTEGER
    if isinstance(value, float):
        return AttributeType.FLOAT
    if isinstance(value, datetime | date):
        return AttributeType.DATE
    if isinstance(value, list | tuple):
        return AttributeType.ARRAY
    if isinstance(value, dict):
        return AttributeType.OBJECT
    return AttributeType.STRING


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def apply_ops(
    current: dict[str, Attribute], ops: Iterable[AttributeOp]
) -> dict[str, Attribute | None]:
    """Apply ``ops`` in order to ``current``; returns the changed names (``None`` = removed).

    ``current`` is updated in place so later operations see earlier ones.
    """
    changed: dict[str, Attribute | None] = {}
    for op in ops:
        before = current.get(op.name)
        after = _apply(before, op)
        if after is not None and after is before:
            continue  # nothing changed (a set-once of an attribute that exists)
        if after is None:
            current.pop(op.name, None)
        else:
            current[op.name] = after
        changed[op.name] = after
    return changed


def _apply(before: Attribute | None, op: AttributeOp) -> Attribute | None:
    if op.kind is AttributeOpKind.SET:
        if op.value is None:
            return None
        return Attribute(op.type or infer_type(op.value), _plain(op.value))
    if op.kind is AttributeOpKind.SET_ONCE:
        if before is not None or op.value is None:
            return before  # never overwrites, and a null sets nothing
        return Attribute(op.type or infer_type(op.value), _plain(op.value))
    if op.kind is AttributeOpKind.REMOVE:
        return None
    if op.kind is AttributeOpKind.INCREMENT:
        amount = op.value
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise ProfileOpError(f"{op.name}: increment needs a number, got {amount!r}")
        if before is None:
            return Attribute(infer_type(amount), amount)
        if before.type not in (AttributeType.INTEGER, AttributeType.FLOAT):
            raise ProfileOpError(f"{op.name}: cannot increment a {before.type.value} attribute")
        total = before.value + amount
        return Attribute(infer_type(total), total)
    items = list(op.value) if isinstance(op.value, list | tuple) else [op.value]
    existing: list[Any] = []
    if before is not None:
        if before.type is not AttributeType.ARRAY:
            raise ProfileOpError(
                f"{op.name}: cannot change items of a {before.type.value} attribute"
            )
        existing = list(before.value)
    if op.kind is AttributeOpKind.ADD_TO_ARRAY:
        existing.extend(_plain(item) for item in items if _plain(item) not in existing)
    else:  # REMOVE_FROM_ARRAY
        existing = [item for item in existing if item not in items]
    return Attribute(AttributeType.ARRAY, existing)
