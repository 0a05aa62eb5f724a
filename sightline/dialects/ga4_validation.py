"""GA4's validation rules, worded as its validation server words them (``/debug/mp/collect``).

developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events: the
answer is ``{"validationMessages": [{"fieldPath", "description", "validationCode"}]}``;
the limits are those of the Measurement Protocol's reference (25 events, 25 params per
event, names of at most 40 characters starting with a letter, values of at most 100
characters; 25 user properties, names of at most 24 characters, values of at most 36;
reserved names and prefixes; events back-dated by at most 72 hours).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import msgspec

from sightline.dialects.decoding import decode
from sightline.dialects.ga4 import Ga4Event, Measurement, time_of
from sightline.errors import FieldError, InvalidInput

MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_USER_PROPERTIES = 25
MAX_EVENT_NAME = 40
MAX_PARAM_NAME = 40
MAX_PARAM_VALUE = 100
MAX_PROPERTY_NAME = 24
MAX_PROPERTY_VALUE = 36
BACKDATE = timedelta(hours=72)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("_", "firebase_", "google_", "ga_")
RESERVED_EVENTS = frozenset(
    [
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "firebase_campaign",
        "firebase_in_app_message_action",
        "firebase_in_app_message_dismiss",
        "firebase_in_app_message_impression",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "session_start",
        "session_start_with_rollout",
        "user_engagement",
    ]
)
RESERVED_PARAMS = frozenset({"firebase_conversion"})
RESERVED_USER_PROPERTIES = frozenset(
    {"first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id"}
    | {"first_open_after_install"}
)


class ValidationMessage(msgspec.Struct):
    fieldPath: str
    description: str
    validationCode: str


class ValidationAnswer(msgspec.Struct):
    """What GA4's validation server (``/debug/mp/collect``) answers."""

    validationMessages: list[ValidationMessage]


# -- validation (collector side) -------------------------------------------------------


def decode_measurement(raw: bytes) -> Measurement:
    return decode(raw, Measurement, what="measurement")


def messages(measurement: Measurement, now: datetime) -> list[ValidationMessage]:
    """Every rule the measurement breaks, as GA4's validation server words it."""
    out: list[ValidationMessage] = []

    def add(path: str, description: str, code: str) -> None:
        out.append(ValidationMessage(path, description, code))

    if not measurement.client_id and not measurement.app_instance_id:
        add("client_id", "Measurement requires a client_id.", "VALUE_REQUIRED")
    _timestamp(add, "timestamp_micros", measurement.timestamp_micros, now)
    events = measurement.events or []
    if not events:
        add("events", "Measurement requires at least one event.", "VALUE_REQUIRED")
    if len(events) > MAX_EVENTS:
        add(
            "events",
            f"A measurement can have at most {MAX_EVENTS} events.",
            "EXCEEDED_MAX_ENTITIES",
        )
    for index, event in enumerate(events):
        _event(add, index, event, now)
    properties = measurement.user_properties or {}
    if len(properties) > MAX_USER_PROPERTIES:
        add(
            "user_properties",
            f"A measurement can have at most {MAX_USER_PROPERTIES} user properties.",
            "EXCEEDED_MAX_ENTITIES",
        )
    for name, prop in properties.items():
        path = f"user_properties.{name}"
        _name(add, path, "User property", name, MAX_PROPERTY_NAME, RESERVED_USER_PROPERTIES)
        if isinstance(prop.value, str) and len(prop.value) > MAX_PROPERTY_VALUE:
            add(
                path,
                f"User property [{name}] has a value longer than {MAX_PROPERTY_VALUE} characters.",
                "VALUE_OUT_OF_BOUNDS",
            )
        _timestamp(add, f"{path}.timestamp_micros", prop.timestamp_micros, now)
    return out


def _event(add: Any, index: int, event: Ga4Event, now: datetime) -> None:
    at = f"Event at index: [{index}]"
    if not event.name:
        add("events", f"{at} requires a name.", "VALUE_REQUIRED")
    elif not event.name[0].isalpha() or not event.name.isascii():
        add(
            "events",
            f"{at} has invalid name [{event.name}]. Names must start with an alphabetic character.",
            "NAME_INVALID",
        )
    elif not _NAME.match(event.name):
        add(
            "events",
            f"{at} has invalid name [{event.name}]. Only alphanumeric characters and "
            "underscores are allowed.",
            "NAME_INVALID",
        )
    elif len(event.name) > MAX_EVENT_NAME:
        add(
            "events",
            f"{at} has name [{event.name}] longer than {MAX_EVENT_NAME} characters.",
            "VALUE_OUT_OF_BOUNDS",
        )
    elif event.name in RESERVED_EVENTS or event.name.startswith(RESERVED_PREFIXES):
        add("events", f"{at} has reserved name [{event.name}].", "NAME_RESERVED")
    params = event.params or {}
    path = f"events[{index}].params"
    if len(params) > MAX_PARAMS:
        add(path, f"{at} has more than {MAX_PARAMS} params.", "EXCEEDED_MAX_ENTITIES")
    for name, value in params.items():
        _name(add, f"{path}.{name}", "Event param", name, MAX_PARAM_NAME, RESERVED_PARAMS)
        if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
            add(
                f"{path}.{name}",
                f"Event param [{name}] has a value longer than {MAX_PARAM_VALUE} characters.",
                "VALUE_OUT_OF_BOUNDS",
            )
        elif isinstance(value, dict) or (isinstance(value, list) and name != "items"):
            add(
                f"{path}.{name}",
                f"Event param [{name}] has an unsupported type.",
                "UNSUPPORTED_TYPE",
            )
        elif isinstance(value, list) and not all(isinstance(i, dict) for i in value):
            add(f"{path}.{name}", "Every item must be an object.", "UNSUPPORTED_TYPE")
    _timestamp(add, f"events[{index}].timestamp_micros", event.timestamp_micros, now)


def _name(add: Any, path: str, what: str, name: str, limit: int, reserved: frozenset[str]) -> None:
    if not _NAME.match(name):
        add(
            path,
            f"{what} [{name}] has an invalid name. Names must start with an alphabetic "
            "character and hold only alphanumeric characters and underscores.",
            "NAME_INVALID",
        )
    elif len(name) > limit:
        add(
            path,
            f"{what} [{name}] has a name longer than {limit} characters.",
            "VALUE_OUT_OF_BOUNDS",
        )
    elif name in reserved or name.startswith(RESERVED_PREFIXES):
        add(path, f"{what} [{name}] has a reserved name.", "NAME_RESERVED")


def _timestamp(add: Any, path: str, micros: int | None, now: datetime) -> None:
    if micros is None:
        return
    at = time_of(micros)
    if at is None or at > now + timedelta(days=1):
        add(path, "The timestamp is not a time GA4 accepts.", "VALUE_INVALID")
    elif at < now - BACKDATE:
        add(path, "The timestamp is more than 72 hours in the past.", "VALUE_OUT_OF_BOUNDS")


def validate(raw: bytes, now: datetime) -> Measurement:
    """The measurement, or :class:`InvalidInput` with every validation message as a field."""
    measurement = decode_measurement(raw)
    found = messages(measurement, now)
    if found:
        raise InvalidInput(
            "invalid measurement",
            [FieldError(m.fieldPath, f"{m.validationCode}: {m.description}") for m in found],
        )
    return measurement
