"""Pyze's User Profiles API (seeds/001_52436bf4e01addcf.txt), part of the ``pyze`` dialect.

``POST /users/profile`` takes ``{"user_profiles": [...]}`` (the page's example is
not valid JSON; ARCHITECTURE.md gives the intended shape) with the server key in a
header (the page leaves credentials to the account manager). Each profile is
checked here in full, then queued as its own envelope (kind ``profile``: ordered
with events, idempotent, never lost) and applied by the worker through the shared
profile operations. ``GET /users/profile/{id}`` reads the merged profile back, by
``userId`` / ``customer_id``, ``pyze_id`` or any ``user_alias`` id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgspec

from sightline.dialects.base import new_event
from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ALIAS_LABEL, MAX_ID, MAX_NAME, Id, Name, parse_iso8601
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import (
    AliasChange,
    AttributeOp,
    AttributeOpKind,
    AttributeType,
    EventType,
    Normalised,
    UserChange,
)

MAX_PROFILES_BYTES = 1024 * 1024
MAX_PROFILE_FIELDS = 50
PROFILE_KIND = "profile"

IDENTIFIERS = ("userId", "customer_id", "pyze_id")
ALIAS_FIELD = "user_alias"
DATE_FIELDS = frozenset({"date_of_birth", "date_of_first_use", "date_of_last_use"})
EMAIL_FIELD = "email_id"
PYZE_ID_KIND = "pyze_id"


class UserAlias(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    alias_label: Name
    alias_id: Id


class ProfileUpload(msgspec.Struct, kw_only=True):
    """The body of ``POST /users/profile``; each profile is checked by :func:`parse_profile`."""

    user_profiles: list[dict[str, Any]]


def pyze_errors(exc: InvalidInput) -> InvalidInput:
    """Pyze's wording: a missing field "is not provided", an unknown one is named."""
    errors: list[FieldError] = []
    for error in exc.errors:
        if error.reason.startswith("Object contains unknown field "):
            name = error.reason.removeprefix("Object contains unknown field ")
            path = "" if error.field == "$" else error.field + "."
            errors.append(FieldError(path + name, "is not a field of this API"))
        else:
            errors.append(error)
    first = errors[0] if errors else None
    if first is not None and "missing required field" in first.reason:
        message = f'"{first.field}" is not provided'
    elif first is not None:
        message = f'Not a valid input: "{first.field}" {first.reason}'
    else:
        message = "Not a valid input"
    return InvalidInput(message, errors)


@dataclass
class ParsedProfile:
    """One user profile as canonical changes (or the reasons it is not one)."""

    external_id: str = ""
    match_alias: bool = False
    email: str | None = None
    aliases: list[AliasChange] = field(default_factory=list)
    ops: list[AttributeOp] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)


def _identifier(profile: dict[str, Any], name: str, parsed: ParsedProfile, at: str) -> str | None:
    value = profile.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        parsed.errors.append(FieldError(at + name, "must be a string"))
        return None
    text = str(value)
    if not 1 <= len(text) <= MAX_ID:
        parsed.errors.append(FieldError(at + name, f"must be 1 to {MAX_ID} characters"))
        return None
    return text


def _user_aliases(value: Any, parsed: ParsedProfile, at: str) -> None:
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        where = at + ALIAS_FIELD + (f"[{index}]" if isinstance(value, list) else "")
        try:
            alias = msgspec.convert(item, UserAlias)
        except msgspec.ValidationError as exc:
            parsed.errors.append(FieldError(where, str(exc).replace("`", "")))
            continue
        if len(alias.alias_label) > MAX_ALIAS_LABEL:
            parsed.errors.append(
                FieldError(where + ".alias_label", f"at most {MAX_ALIAS_LABEL} characters")
            )
            continue
        parsed.aliases.append(
            AliasChange(alias=alias.alias_id, user_external_id="", kind=alias.alias_label)
        )


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int) and not isinstance(value, float)


def _op(name: str, value: Any, where: str) -> AttributeOp | FieldError:
    """One profile field as an attribute operation (the page's value forms)."""
    if value is None:
        return AttributeOp(name, AttributeOpKind.REMOVE)
    if name in DATE_FIELDS:
        moment = parse_iso8601(value) if isinstance(value, str) else None
        if moment is None:
            return FieldError(where, "must be an ISO-8601 date")
        return AttributeOp(name, AttributeOpKind.SET, value, AttributeType.DATE)
    if isinstance(value, bool):
        return AttributeOp(name, AttributeOpKind.SET, value, AttributeType.BOOL)
    if isinstance(value, int):
        return AttributeOp(name, AttributeOpKind.SET, value, AttributeType.INTEGER)
    if isinstance(value, str):
        if len(value) > 4096:
            return FieldError(where, "at most 4096 characters")
        kind = AttributeType.DATE if isinstance(parse_iso8601(value), date) else None
        return AttributeOp(name, AttributeOpKind.SET, value, kind or AttributeType.STRING)
    if isinstance(value, list):
        if not all(_scalar(item) for item in value):
            return FieldError(where, "array items must be strings, integers or booleans")
        return AttributeOp(name, AttributeOpKind.SET, value, AttributeType.ARRAY)
    if isinstance(value, dict) and len(value) == 1:
        ((verb, amount),) = value.items()
        if verb == "inc":
            if isinstance(amount, bool) or not isinstance(amount, int):
                return FieldError(where + ".inc", "must be an integer")
            return AttributeOp(name, AttributeOpKind.INCREMENT, amount)
        if verb in ("add", "remove"):
            if not isinstance(amount, list) or not all(_scalar(i) for i in amount):
                return FieldError(where + "." + verb, "must be an array of strings or integers")
            change = (
                AttributeOpKind.ADD_TO_ARRAY if verb == "add" else AttributeOpKind.REMOVE_FROM_ARRAY
            )
            return AttributeOp(name, change, amount)
    return FieldError(
        where,
        "must be a boolean, string, integer, ISO-8601 date, array, null, "
        '{"inc": n}, {"add": [...]} or {"remove": [...]}',
    )


def parse_profile(profile: Any, at: str = "") -> ParsedProfile:
    """Check one profile and turn it into canonical changes; pure, used on both sides."""
    parsed = ParsedProfile()
    if not isinstance(profile, dict):
        parsed.errors.append(FieldError(at.rstrip(".") or "$", "must be an object"))
        return parsed
    user_id = _identifier(profile, "userId", parsed, at)
    customer_id = _identifier(profile, "customer_id", parsed, at)
    pyze_id = _identifier(profile, "pyze_id", parsed, at)
    if user_id and customer_id and user_id != customer_id:
        parsed.errors.append(
            FieldError(at + "customer_id", "names another user than userId (they are the same id)")
        )
    external = user_id or customer_id
    if external is None and pyze_id is None and not parsed.errors:
        parsed.errors.append(FieldError(at + "userId", "is not provided"))
    parsed.external_id = external or pyze_id or ""
    parsed.match_alias = external is None
    if external is not None and pyze_id is not None:
        parsed.aliases.append(AliasChange(alias=pyze_id, user_external_id="", kind=PYZE_ID_KIND))
    if ALIAS_FIELD in profile:
        _user_aliases(profile[ALIAS_FIELD], parsed, at)
    fields = {k: v for k, v in profile.items() if k not in IDENTIFIERS and k != ALIAS_FIELD}
    if len(fields) > MAX_PROFILE_FIELDS:
        parsed.errors.append(
            FieldError(
                at.rstrip(".") or "$",
                f"a profile may include up to {MAX_PROFILE_FIELDS} profile fields, "
                f"this one has {len(fields)}",
            )
        )
        return parsed
    for name, value in fields.items():
        if not 1 <= len(name) <= MAX_NAME:
            parsed.errors.append(FieldError(at + name, f"names must be 1 to {MAX_NAME} characters"))
            continue
        op = _op(name, value, at + name)
        if isinstance(op, FieldError):
            parsed.errors.append(op)
            continue
        parsed.ops.append(op)
        if name == EMAIL_FIELD and isinstance(value, str):
            if "@" not in value or len(value) > 320:
                parsed.errors.append(FieldError(at + name, "is not an e-mail address"))
            parsed.email = value
    parsed.fields = fields
    parsed.aliases = [
        msgspec.structs.replace(a, user_external_id=parsed.external_id) for a in parsed.aliases
    ]
    return parsed


def validate_profiles(raw: bytes) -> list[dict[str, Any]]:
    try:
        upload = decode(raw, ProfileUpload, what="user profiles")
    except InvalidInput as exc:
        raise pyze_errors(exc) from None
    if not upload.user_profiles:
        raise InvalidInput(
            'Not a valid input: "user_profiles" is empty',
            [FieldError("user_profiles", "must hold at least one profile")],
        )
    errors: list[FieldError] = []
    for index, profile in enumerate(upload.user_profiles):
        errors += parse_profile(profile, f"user_profiles[{index}].").errors
    if errors:
        # All or nothing, like a batch: a retried request must not apply half of it twice.
        raise InvalidInput(f'Not a valid input: "{errors[0].field}" {errors[0].reason}', errors)
    return upload.user_profiles


def normalise_profile(envelope: Envelope) -> Normalised:
    parsed = parse_profile(envelope.body)
    if parsed.errors:  # validated when accepted: only a changed rule can get here
        raise ValueError("; ".join(f"{e.field}: {e.reason}" for e in parsed.errors))
    identify = new_event(
        envelope,
        name="identify",
        type=EventType.IDENTIFY,
        user_id=parsed.external_id,
        properties=parsed.fields,
    )
    user = UserChange(
        external_id=parsed.external_id,
        email=parsed.email,
        ops=tuple(parsed.ops),
        match_alias=parsed.match_alias,
    )
    return Normalised(events=(identify,), users=(user,), aliases=tuple(parsed.aliases))
