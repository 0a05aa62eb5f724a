"""The Gameball dialect: ``POST /integrations/event`` (seeds/003_f9c4d5b8b0e2ef64.txt).

One call carries one player and any number of events (none too: ``"events": {}``
creates or updates the player, its ``mobile`` / ``email`` and channel merging,
recorded as one ``identify`` event)::

    {"playerUniqueId": "player123", "mobile"?: "+20...", "email"?: "...",
     "events": {"place_order": {"total_amount": 100, "category": ["electronics"]},
                "reserve": {"rooms": [1, 2], "gift": true}, "review": {}}}

Metadata values are numbers, strings, booleans or arrays of those.

The page's remarks are rules, not advice: an event name may appear once, and a
metadata key once per event. JSON objects with repeated keys are legal text that
every dict-based decoder silently merges (the last value wins), so this endpoint
scans the text once more with ``object_pairs_hook`` to see them and answers 400
naming the repeated name. The scan runs only after the body decoded, so it costs
one extra parse of a body that is at most 64 KB.

Auth is the ``APIKey`` header (a write or a server key). Channel merging is a
product setting read when the call is accepted: the envelope's kind records it
(``event`` or ``event+merge``), so replaying an envelope later gives the same
result whatever the setting is then. Events received while the product is
disabled are stored and marked unused by the worker (the product's enabled flag).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import decode
from sightline.dialects.dedup import content_id
from sightline.dialects.fields import Email, Id, Mobile, Name
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput, field_error
from sightline.model import EventType, Normalised, UserChange

NAME = "gameball"
MAX_BODY_BYTES = 64 * 1024
KIND = "event"
KIND_MERGING = "event+merge"

Scalar = int | float | bool | Name
MetadataValue = Scalar | list[Scalar]
"""The page: "Every Metadata can be a number, a string or an array of values"; booleans
are values too (``{"gift": true}``), arrays hold any of these (``{"rooms": [1, 2]}``)."""


class GameballEventCall(msgspec.Struct, kw_only=True):
    """The body of ``POST /integrations/event``."""

    playerUniqueId: Id
    events: dict[Name, dict[Name, MetadataValue]]
    mobile: Mobile | None = None
    email: Email | None = None


# -- validation ------------------------------------------------------------------------


class _Pairs(dict[str, Any]):
    """A JSON object that remembers which keys the text repeated."""

    repeated: list[str]


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    result = _Pairs()
    result.repeated = []
    for key, value in items:
        if key in result and key not in result.repeated:
            result.repeated.append(key)
        result[key] = value
    return result


MAX_DIGITS = 4000  # Python refuses to read integers of more than 4,300 digits


def _integer(digits: str) -> int:
    if len(digits) > MAX_DIGITS:
        raise InvalidInput(
            "invalid event call", [FieldError("$", f"a number of more than {MAX_DIGITS} digits")]
        )
    return int(digits)


def _document(raw: bytes, **hooks: Any) -> Any:
    """The body as Python values, for the checks msgspec's decoding cannot make."""
    return json.loads(raw, parse_int=_integer, **hooks)


def repeated_names(raw: bytes) -> list[FieldError]:
    """Every name the JSON text repeats where the page forbids it, as field errors."""
    document = _document(raw, object_pairs_hook=_pairs)
    errors = [FieldError(k, "repeated field") for k in getattr(document, "repeated", [])]
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, _Pairs):
        return errors
    errors += [FieldError(f"events.{k}", "event name is repeated") for k in events.repeated]
    for name, metadata in events.items():
        if isinstance(metadata, _Pairs):
            errors += [
                FieldError(f"events.{name}.{k}", "metadata key is repeated")
                for k in metadata.repeated
            ]
    return errors


def _named(raw: bytes, exc: InvalidInput) -> InvalidInput:
    """msgspec writes a dict's keys as ``[...]``: name the event and metadata key instead."""
    if not any("[...]" in e.field for e in exc.errors):
        return exc
    events = _document(raw).get("events")
    errors: list[FieldError] = []
    for name, metadata in events.items() if isinstance(events, dict) else ():
        where = f"events.{name}"
        try:
            msgspec.convert(name, Name)
            msgspec.convert(metadata, dict[str, Any])
        except msgspec.ValidationError as error:
            errors.append(FieldError(where, str(error).replace("`", "")))
            continue
        for key, value in metadata.items():
            try:
                msgspec.convert(key, Name)
                msgspec.convert(value, MetadataValue)
            except msgspec.ValidationError as error:
                errors.append(field_error(error, prefix=f"{where}.{key}"))
    return InvalidInput(exc.message, errors or exc.errors)


def validate(raw: bytes) -> GameballEventCall:
    try:
        call = decode(raw, GameballEventCall, what="event call")
    except InvalidInput as exc:
        raise _named(raw, exc) from None
    errors = repeated_names(raw)
    if errors:
        raise InvalidInput("invalid event call", errors)
    return call


# -- mapping to the canonical model (worker side, pure) --------------------------------


def _json(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def normalise(envelope: Envelope) -> Normalised:
    call = msgspec.convert(envelope.body, GameballEventCall)
    context = client_context(None, None, envelope.ip, envelope.user_agent)
    events = tuple(
        # Gameball sends no message id: the envelope id and the event's place in the
        # call are stable (``new_event``), so a replayed envelope stores nothing twice.
        new_event(
            envelope,
            # No message id in the format: a retry of the same call within a minute is
            # the same event (``dedup``), whichever envelope carried it.
            message_id=content_id(
                envelope, [call.playerUniqueId, name, _json(metadata)], unique=False
            ),
            name=name,
            type=EventType.TRACK,
            user_id=call.playerUniqueId,
            properties=dict(metadata),
            context=dict(context),
        )
        for index, (name, metadata) in enumerate(call.events.items())
    ) or (
        # No events: the call still creates the player and applies its channels (the page:
        # "the customer will be created automatically"), recorded as an identify event.
        new_event(
            envelope,
            message_id=content_id(
                envelope, [call.playerUniqueId, call.email, call.mobile], unique=False
            ),
            name="identify",
            type=EventType.IDENTIFY,
            user_id=call.playerUniqueId,
            context=dict(context),
        ),
    )
    player = UserChange(
        external_id=call.playerUniqueId,
        email=call.email,
        mobile=call.mobile,
        match_channels=envelope.kind == KIND_MERGING,
    )
    return Normalised(events=events, users=(player,))


DIALECT = Dialect(NAME, "Gameball", normalise)
