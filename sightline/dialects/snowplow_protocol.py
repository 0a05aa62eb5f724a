"""The Snowplow tracker protocol's wire schema and validation (``sightline.dialects.snowplow``).

Every event is a map of short text fields (the payload_data schema says strings;
numbers and booleans some trackers send are taken as their text). :func:`parse_event`
decodes what a field holds (times, numbers, the self-describing event, the contexts)
and names every field that is wrong: the collector calls it to validate, the worker
to map.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ID, MAX_NAME
from sightline.errors import FieldError, InvalidInput
from sightline.model import EventType

NAME = "snowplow"
MAX_BODY_BYTES = 1_000_000
"""Snowplow's own collector sinks payloads of up to 1 MB."""
EVENT, ANONYMOUS_EVENT, REJECTED = "event", "event+anonymous", "rejected"
IGLU = r"^iglu:[a-zA-Z0-9_.-]+/[a-zA-Z0-9_.-]+/jsonschema/\d+-\d+-\d+$"
PAYLOAD_DATA = r"^iglu:com\.snowplowanalytics\.snowplow/payload_data/jsonschema/1-0-\d+$"
_IGLU = re.compile(r"^iglu:(?P<vendor>[^/]+)/(?P<name>[^/]+)/jsonschema/")
EVENT_TYPES = {
    "pv": EventType.PAGE,
    "pp": EventType.ENGAGEMENT,
    "se": EventType.TRACK,
    "ue": EventType.TRACK,
    "tr": EventType.TRACK,
    "ti": EventType.TRACK,
}
FIXED_NAMES = {"pv": "page_view", "pp": "page_ping", "tr": "transaction", "ti": "transaction_item"}
PING_FIELDS = ("pp_mix", "pp_max", "pp_miy", "pp_may")
STRUCT_FIELDS = {"se_ca": "category", "se_ac": "action", "se_la": "label", "se_pr": "property"}
TIMES = ("dtm", "stm", "ttm")
IDS = ("eid", "uid", "duid", "sid", "nuid", "tnuid", "se_ac")
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_DIGITS = re.compile(r"^-?\d{1,16}$")

Value = str | int | float | bool
"""A field's value: the protocol says text; numbers and booleans are taken as their text."""


class PayloadData(msgspec.Struct):
    """The body of ``POST /com.snowplowanalytics.snowplow/tp2``."""

    schema: Annotated[str, msgspec.Meta(pattern=PAYLOAD_DATA)]
    data: Annotated[list[dict[str, Value]], msgspec.Meta(min_length=1)]


class SelfDescribing(msgspec.Struct):
    schema: Annotated[str, msgspec.Meta(pattern=IGLU)]
    data: dict[str, Any]


class UnstructEvent(msgspec.Struct):
    """``ue_pr``: ``{"schema": "...unstruct_event/...", "data": {"schema", "data"}}``."""

    schema: Annotated[str, msgspec.Meta(pattern=IGLU)]
    data: SelfDescribing


class Contexts(msgspec.Struct):
    """``co``: ``{"schema": "...contexts/...", "data": [{"schema", "data"}, ...]}``."""

    schema: Annotated[str, msgspec.Meta(pattern=IGLU)]
    data: list[SelfDescribing]


class Parsed(msgspec.Struct, kw_only=True):
    """One event's fields, decoded and checked."""

    fields: dict[str, str]
    times: dict[str, datetime]
    unstruct: SelfDescribing | None = None
    contexts: list[SelfDescribing] = msgspec.field(default_factory=list)
    numbers: dict[str, int | float] = msgspec.field(default_factory=dict)


# -- validation ------------------------------------------------------------------------


def as_text(event: dict[str, Value]) -> dict[str, str]:
    """The fields as the protocol writes them: text (``true``/``false`` for booleans)."""
    return {
        k: (("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in event.items()
    }


def validate_payload(raw: bytes) -> PayloadData:
    """``raw`` as ``payload_data``, or 400 naming what is wrong."""
    return decode(raw, PayloadData, what="payload_data")


def parse_event(fields: dict[str, str], prefix: str = "") -> Parsed:
    """One event's fields decoded, or :class:`InvalidInput` naming every failing field."""
    errors: list[FieldError] = []
    kind = fields.get("e")
    if kind not in EVENT_TYPES:
        errors.append(FieldError(prefix + "e", f"must be one of {', '.join(EVENT_TYPES)}"))
    errors += [
        FieldError(prefix + name, f"longer than {MAX_ID} characters")
        for name in IDS
        if len(fields.get(name, "")) > MAX_ID
    ]
    times: dict[str, datetime] = {}
    for name in TIMES:
        if fields.get(name):
            moment = _epoch_ms(fields[name])
            if moment is None:
                errors.append(FieldError(prefix + name, "must be milliseconds since the epoch"))
            else:
                times[name] = moment
    numbers: dict[str, int | float] = {}
    for name in PING_FIELDS if kind == "pp" else ():
        if fields.get(name):
            if _DIGITS.match(fields[name]):
                numbers[name] = int(fields[name])
            else:
                errors.append(FieldError(prefix + name, "must be a whole number"))
    unstruct = None
    if kind == "se":
        errors += [
            FieldError(prefix + f, "required for a structured event")
            for f in ("se_ca", "se_ac")
            if not fields.get(f)
        ]
        if fields.get("se_va"):
            try:
                numbers["se_va"] = float(fields["se_va"])
            except ValueError:
                errors.append(FieldError(prefix + "se_va", "must be a number"))
    elif kind == "ue":
        try:
            unstruct = _self_describing(fields, "ue_pr", "ue_px", UnstructEvent, prefix)
            if unstruct is None:
                errors.append(FieldError(prefix + "ue_pr", "ue_pr or ue_px is required"))
        except InvalidInput as exc:
            errors += exc.errors
        if unstruct is not None and len(schema_name(unstruct.data.schema)) > MAX_NAME:
            errors.append(FieldError(prefix + "ue_pr", f"schema name over {MAX_NAME} characters"))
    contexts: list[SelfDescribing] = []
    try:
        found = _self_describing(fields, "co", "cx", Contexts, prefix)
        contexts = found.data if found is not None else []
    except InvalidInput as exc:
        errors += exc.errors
    if errors:
        raise InvalidInput("invalid Snowplow event", errors)
    return Parsed(
        fields=fields,
        times=times,
        unstruct=unstruct.data if isinstance(unstruct, UnstructEvent) else None,
        contexts=contexts,
        numbers=numbers,
    )


def _epoch_ms(text: str) -> datetime | None:
    if not _DIGITS.match(text) or not 0 <= int(text) <= MAX_EPOCH_MS:
        return None
    return datetime.fromtimestamp(int(text) / 1000, UTC)


def _self_describing(
    fields: dict[str, str], plain: str, encoded: str, schema: type[Any], prefix: str
) -> Any:
    """``plain`` (JSON) or else ``encoded`` (base64url JSON) decoded as ``schema``."""
    if fields.get(plain):
        return decode(fields[plain].encode(), schema, what=plain, prefix=f"{prefix}{plain}.")
    if not fields.get(encoded):
        return None
    text = fields[encoded].strip().translate(str.maketrans("+/", "-_")).rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"invalid {encoded}", [FieldError(prefix + encoded, "not base64url")]
        ) from None
    return decode(raw, schema, what=encoded, prefix=f"{prefix}{encoded}.")


def schema_name(uri: str) -> str:
    """``iglu:com.acme/link_click/jsonschema/1-0-0`` -> ``link_click``."""
    match = _IGLU.match(uri)
    return match.group("name") if match else uri
