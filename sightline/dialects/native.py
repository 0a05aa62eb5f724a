"""The native dialect: Segment's tracking-API message shape.

Our own snippet speaks it, and so do Segment-style SDKs (analytics.js,
analytics-python, analytics-node ...): ``identify``, ``track``, ``page``,
``screen``, ``group``, ``alias`` at ``/v1/<type>`` (and analytics-next's short
paths ``/v1/t|p|s|i|g|a``) and up to 500 KB of them at ``/v1/batch`` (``/v1/b``,
RudderStack's ``/v1/import`` and ``/beacon/v1/batch``). Sightline adds two message
types of its own for the snippet: ``click`` and ``engagement``.

Decisions where Segment's spec is silent or its SDKs disagree:

- An empty ``userId`` or ``anonymousId`` is absent (RudderStack's browser SDK sends
  ``"userId": ""`` for anonymous users); a message still needs one of them non-empty.
- identify and group traits are ``traits``, else ``context.traits`` (RudderStack
  sends identify traits only there).
- A batch's own ``context`` is merged under each message's: the message's keys win,
  and a dict both have (``library``, ``page``) is merged one level deep.
- A batch is accepted message by message: the valid ones are stored, the invalid ones
  answered and dead-lettered (``sightline.dialects.native_batch``).

This module owns the wire schema (decoding is validation) and the mapping to the
canonical model; nothing else knows Segment's field names. Its endpoints are in
``collector.endpoints.native``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from sightline.dialects.base import Dialect, new_event
from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ID, Id, LooseId, Name, Properties, edge_errors, text_id
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput, PayloadTooLarge
from sightline.model import (
    AccountChange,
    AliasChange,
    AttributeOp,
    AttributeOpKind,
    EventType,
    Normalised,
    UserChange,
)

NAME = "native"
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
REJECTED = "rejected"
"""The kind of an envelope holding a batch's invalid message and why it was refused: the
worker dead-letters it with that reason (see :func:`normalise`)."""

UserRef = Annotated[str, msgspec.Meta(max_length=MAX_ID)] | int
"""``userId`` / ``anonymousId``: ``""`` is accepted on the wire and means absent."""


# -- wire schema ---------------------------------------------------------------


class Message(msgspec.Struct, kw_only=True, tag_field="type"):
    messageId: Id | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    userId: UserRef | None = None
    anonymousId: UserRef | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None


class Track(Message, kw_only=True, tag="track"):
    event: Name
    properties: Properties | None = None


class Page(Message, kw_only=True, tag="page"):
    name: Name | None = None
    category: Name | None = None
    properties: Properties | None = None


class Screen(Message, kw_only=True, tag="screen"):
    name: Name | None = None
    category: Name | None = None
    properties: Properties | None = None


class Identify(Message, kw_only=True, tag="identify"):
    traits: Properties | None = None


class Group(Message, kw_only=True, tag="group"):
    groupId: LooseId
    traits: Properties | None = None


class Alias(Message, kw_only=True, tag="alias"):
    previousId: LooseId


class Click(Message, kw_only=True, tag="click"):
    event: Name = "click"
    properties: Properties | None = None


class Engagement(Message, kw_only=True, tag="engagement"):
    event: Name = "engagement"
    properties: Properties | None = None


AnyMessage = Track | Page | Screen | Identify | Group | Alias | Click | Engagement
MESSAGE_TYPES: dict[str, type[AnyMessage]] = {
    "track": Track,
    "page": Page,
    "screen": Screen,
    "identify": Identify,
    "group": Group,
    "alias": Alias,
    "click": Click,
    "engagement": Engagement,
}


class BatchWire(msgspec.Struct, kw_only=True):
    batch: list[msgspec.Raw]
    writeKey: str | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] | None = None


# -- validation ----------------------------------------------------------------


def validate(kind: str, raw: bytes, prefix: str = "") -> AnyMessage:
    """Decode one message as ``kind``; rules no schema can say are checked here."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(
            f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES} bytes",
            [FieldError(prefix.rstrip(".") or "$", "message larger than 32 KB")],
        )
    message = decode(raw, MESSAGE_TYPES[kind], what=f"{kind} message", prefix=prefix)
    times = {"timestamp": message.timestamp, "originalTimestamp": message.originalTimestamp}
    errors = edge_errors(prefix, message.context, sentAt=message.sentAt, **times)
    if _id_of(message.userId) is None and _id_of(message.anonymousId) is None:
        errors.append(FieldError(prefix + "userId", "either userId or anonymousId is required"))
    if errors:
        raise InvalidInput(f"invalid {kind} message", errors)
    return message


# -- mapping to the canonical model (worker side, pure) --------------------------


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == REJECTED:
        raise ValueError(_refusal(envelope.body))
    message = msgspec.convert(envelope.body, MESSAGE_TYPES[envelope.kind], strict=False)
    user_id = _id_of(message.userId)
    anonymous_id = _id_of(message.anonymousId)
    context = dict(message.context or {})
    traits = _traits_of(message, context)
    context.setdefault("ip", envelope.ip)
    context.setdefault("userAgent", envelope.user_agent)
    session_id = context.get("sessionId")
    timestamp = message.timestamp or message.originalTimestamp
    event = new_event(
        envelope,
        message_id=message.messageId,
        name=_event_name(message),
        type=_event_type(message, context),
        timestamp=timestamp,
        sent_at=message.sentAt,
        user_id=user_id,
        anonymous_id=anonymous_id,
        account_id=_account_of(message, context),
        session_id=text_id(session_id) if _is_id(session_id) else None,
        properties=_properties_of(message, traits),
        context=context,
    )
    users: tuple[UserChange, ...] = ()
    accounts: tuple[AccountChange, ...] = ()
    aliases: tuple[AliasChange, ...] = ()
    if isinstance(message, Identify) and user_id is not None:
        users = (
            UserChange(
                external_id=user_id,
                email=_str_or_none(traits.get("email")),
                mobile=_str_or_none(traits.get("phone")),
                account_external_id=text_id(traits.get("groupId"))
                if _is_id(traits.get("groupId"))
                else None,
                ops=tuple(
                    AttributeOp(
                        name=k,
                        kind=AttributeOpKind.SET if v is not None else AttributeOpKind.REMOVE,
                        value=v,
                    )
                    for k, v in traits.items()
                ),
                anonymous_id=anonymous_id,
            ),
        )
    elif isinstance(message, Group):
        group_id = str(message.groupId)
        parent = traits.get("parentId") if _is_id(traits.get("parentId")) else None
        accounts = (
            AccountChange(
                external_id=group_id,
                name=_str_or_none(traits.get("name")),
                parent_external_id=text_id(parent),
                traits=traits,
            ),
        )
        if user_id is not None:
            users = (UserChange(external_id=user_id, account_external_id=group_id),)
    elif isinstance(message, Alias) and user_id is not None:
        aliases = (AliasChange(alias=str(message.previousId), user_external_id=user_id),)
    if user_id is not None and anonymous_id is not None:
        aliases += (AliasChange(alias=anonymous_id, user_external_id=user_id, kind="anonymous"),)
    return Normalised(events=(event,), users=users, accounts=accounts, aliases=aliases)


def _event_name(message: AnyMessage) -> str:
    if isinstance(message, Track | Click | Engagement):
        return message.event
    if isinstance(message, Page | Screen):
        return message.name or ("page_view" if isinstance(message, Page) else "screen_view")
    return message.__struct_config__.tag  # type: ignore[return-value]


_EVENT_TYPES: dict[type[AnyMessage], EventType] = {
    cls: EventType(tag) for tag, cls in MESSAGE_TYPES.items()
}


def _event_type(message: AnyMessage, context: dict[str, Any]) -> EventType:
    kind = _EVENT_TYPES[type(message)]
    if kind is EventType.TRACK and isinstance(context.get("extension"), dict):
        return EventType.EXTENSION
    return kind


def _refusal(body: Any) -> str:
    """Why the collector refused a batch's message (a :data:`REJECTED` envelope's body)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return "a rejected message without its reasons"
    reasons = "; ".join(
        f"{e.get('field')}: {e.get('reason')}" if isinstance(e, dict) else str(e) for e in errors
    )
    return f"refused by the collector: {reasons}"


def _id_of(value: str | int | None) -> str | None:
    return text_id(value) or None  # userId / anonymousId: "" is absent


def _traits_of(message: AnyMessage, context: dict[str, Any]) -> dict[str, Any]:
    """identify / group traits: ``traits``, else ``context.traits`` (RudderStack's place)."""
    if not isinstance(message, Identify | Group):
        return {}
    if message.traits:
        return dict(message.traits)
    in_context = context.get("traits")
    return dict(in_context) if isinstance(in_context, dict) else {}


def _properties_of(message: AnyMessage, traits: dict[str, Any]) -> dict[str, Any]:
    if isinstance(message, Identify | Group):
        return traits
    if isinstance(message, Alias):
        return {"previousId": str(message.previousId)}
    props = dict(message.properties or {})
    if isinstance(message, Page | Screen) and message.category:
        props.setdefault("category", message.category)
    return props


def _account_of(message: AnyMessage, context: dict[str, Any]) -> str | None:
    if isinstance(message, Group):
        return str(message.groupId)
    group_id = context.get("groupId")
    return text_id(group_id) if _is_id(group_id) else None


def _is_id(value: object) -> bool:
    if type(value) is str:  # the common case, without the generic checks
        return value != ""
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


DIALECT = Dialect(NAME, "Segment tracking API", normalise)
