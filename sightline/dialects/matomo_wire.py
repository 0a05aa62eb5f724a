"""Matomo's tracking requests as they arrive: reading, bulk bodies, validation (collector side).

The decisions are in ``sightline.dialects.matomo``'s docstring; this module reads a
request's parameters (a query string, a form body, one request of a bulk body) and
checks them (``validate``); the dialect module maps them to the canonical model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import msgspec

from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ID
from sightline.errors import FieldError, InvalidInput

MAX_BODY_BYTES = 512 * 1024
MAX_VALUE = 16 * 1024
RECENT = timedelta(hours=24)
"""Matomo's ``tracking_requests_require_authentication_when_custom_timestamp_newer_than``."""
OLDEST = timedelta(days=20 * 365)
SECRET_PARAMS = ("token_auth",)
ID_PARAMS = ("_id", "uid", "cid", "pv_id", "idsite")
EVENT_PARAMS = ("e_c", "e_a", "e_n", "e_v")

Params = dict[str, str]
Scalar = str | int | float | bool | None


class BulkBody(msgspec.Struct, kw_only=True):
    """The bulk tracking body (other members, such as matomo.js's ``send_image``, ignored)."""

    requests: list[str | dict[str, Scalar]]
    token_auth: str | None = None


def is_bulk(raw: bytes, content_type: str | None) -> bool:
    """Whether a POST body is a bulk request: JSON (matomo.js sends it as form media)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or raw.lstrip().startswith(b"{")


def form(raw: bytes) -> Params:
    """A form-encoded body (or a query string) as parameters; a repeated name: the last."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "invalid tracking request", [FieldError("$", f"not valid UTF-8 (byte {exc.start})")]
        ) from None
    return dict(parse_qsl(text, keep_blank_values=True))


def decode_bulk(raw: bytes) -> BulkBody:
    return decode(raw, BulkBody, what="bulk tracking request")


def request_params(item: str | dict[str, Scalar]) -> Params:
    """One request of a bulk body: a query string (``?a=b&...``) or an object of parameters."""
    if isinstance(item, str):
        # "?idsite=1&..." or ".../matomo.php?idsite=1&...": the query; "idsite=1&...": itself
        before, mark, query = item.partition("?")
        return form((query if mark and "=" not in before else item).encode())
    return {k: _text(v) for k, v in item.items() if v is not None}


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def is_tracked(params: Params) -> bool:
    return params.get("rec", "").strip() == "1"


def validate(params: Params, *, now: datetime, authenticated: bool) -> Params:
    """The parameters to enqueue, or :class:`InvalidInput` naming every failing field.

    ``token_auth`` is removed, ``cip`` unless ``authenticated``, and a ``cdt`` Matomo
    would ignore (future, or older than 20 years).
    """
    errors = [
        FieldError(name, f"longer than {MAX_VALUE} characters")
        for name, value in params.items()
        if len(value) > MAX_VALUE
    ]
    errors += [
        FieldError(name, f"longer than {MAX_ID} characters")
        for name in ID_PARAMS
        if len(params.get(name, "")) > MAX_ID
    ]
    if any(params.get(name) for name in EVENT_PARAMS):
        errors += [
            FieldError(name, "an event needs a category (e_c) and an action (e_a)")
            for name in ("e_c", "e_a")
            if not params.get(name, "").strip()
        ]
    if params.get("e_v") and number(params["e_v"]) is None:
        errors.append(FieldError("e_v", "must be a number"))
    checked = {k: v for k, v in params.items() if k not in SECRET_PARAMS}
    if not authenticated:
        checked.pop("cip", None)
    if params.get("cdt"):
        at = parse_time(params["cdt"])
        if at is None:
            errors.append(FieldError("cdt", "must be a unix timestamp or a date-time in UTC"))
        elif at > now or at < now - OLDEST:
            del checked["cdt"]  # Matomo ignores a timestamp it cannot believe
        elif at < now - RECENT and not authenticated:
            errors.append(
                FieldError("cdt", "older than 24 hours: needs token_auth (the server key)")
            )
    if errors:
        raise InvalidInput("invalid tracking request", errors)
    return checked


def parse_time(text: str) -> datetime | None:
    """``cdt``: unix seconds, or a date-time (``2024-01-20 12:00:00``, ISO 8601) in UTC."""
    seconds = number(text)
    try:
        if seconds is not None:
            return datetime.fromtimestamp(seconds, UTC)
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
