"""The Fuzy dialect: events as the fuzy-js SDK sends them (seeds/000_750887f3fe2e5c85.txt).

The page links its JS SDK, fuzy-ai/fuzy-js; that SDK (and Fuzy's sample React app)
is what existing Fuzy users send, so its request is the wire format served here::

    PUT /v3/event   x-api-key: <token>   Content-Type: application/json
    {"eventType": "page_view", "timestamp": "2024-03-01T12:00:00.000Z",
     "user": {"userId": "u1", "accountId": "acme", "billingAccountId": "...",
              "paymentProcessorCustomerId": "...", "paymentProcessorSubscriptionId": "..."},
     "product": "", "metadata": {...}, "sessionId": "", "tags": [...],
     "eventId": "<uuid v4>"}

The sample app sends only ``eventType``, ``timestamp``, ``eventId`` and
``user.userId``. The SDK sends ``""`` for what it was not given (``product``,
``sessionId``) and leaves out undefined user fields: an empty string is absent.

Mapping: ``eventType`` is the event name, and its type: ``page_view`` (also
``page_view/<name>``, ``pageview``, ``page``) and a path (``/home``: the sample
app names each route's view by its path, which becomes ``context.page.path``) are
page views, ``screen_view`` a screen, ``click`` / ``button_click`` a click, the
rest track events. ``eventId`` is the message id (a retry stores nothing twice),
``user.userId`` the user, ``user.accountId`` the user's account (the page: a fully
populated user object makes ``/v3/account`` and ``/v3/user`` optional), the three
billing / payment-processor ids the user's payment ids (the page: "the identifiers
needed to link that user to the payment processor"; an event with an account and
no user gives them to the account), ``product: ""`` the key's product (a
non-empty one must be the key's product id or a Fuzy id the product registered),
``metadata`` the properties, ``tags`` the property ``tags``, ``sessionId`` the
session. An event needs ``user.userId`` or ``user.accountId`` (the page: "a
user/account"). Unknown fields are ignored: the SDK may grow.

A body may also be a list of such events (up to :data:`MAX_ITEMS`); invalid input
is a 400 naming every failing field of every item (``[2].user.userId``).
Accounts and users (``/v3/account``, ``/v3/user``) are ``sightline.dialects.fuzy_accounts``.
Endpoints: ``collector.endpoints.fuzy``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from sightline.dialects import fuzy_accounts as accounts
from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import decode
from sightline.dialects.fields import MAX_ID, Name, Properties
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import AccountChange, EventType, Normalised, UserChange

NAME = "fuzy"
MAX_BODY_BYTES = 512 * 1024
MAX_ITEMS = 500
EVENT_KIND = "event"

OptionalId = Annotated[str, msgspec.Meta(max_length=MAX_ID)] | int | None
"""An id the SDK may send empty (``""``: absent) or, from ``getUser()``, as a number."""
Tag = Annotated[str, msgspec.Meta(max_length=MAX_ID)] | int | float | bool


# -- wire schema (fuzy-js) -------------------------------------------------------------


class FuzySdkUser(msgspec.Struct, kw_only=True):
    """The SDK's ``user`` object: who did it, their account and billing ids."""

    userId: OptionalId = None
    accountId: OptionalId = None
    billingAccountId: OptionalId = None
    paymentProcessorCustomerId: OptionalId = None
    paymentProcessorSubscriptionId: OptionalId = None


PAYMENT_FIELDS = (
    "billingAccountId",
    "paymentProcessorCustomerId",
    "paymentProcessorSubscriptionId",
)
"""Kept under these names in the user's (or account's) ``payment_ids``."""


class FuzyEvent(msgspec.Struct, kw_only=True):
    """``PUT /v3/event``: one event as fuzy-js sends it."""

    eventType: Name
    timestamp: datetime
    user: FuzySdkUser
    eventId: OptionalId = None
    """The client's idempotency key (fuzy-js: a UUID v4 unless given one)."""
    product: OptionalId = None
    """A product id; ``""`` (the SDK's default) is the key's product."""
    metadata: Properties | None = None
    sessionId: OptionalId = None
    tags: list[Tag] | None = None


def text(value: str | int | None) -> str | None:
    """An SDK id as text; ``""`` and ``null`` are absent."""
    return None if value is None or value == "" else str(value)


# -- validation ------------------------------------------------------------------------

SCHEMAS: dict[str, type[Any]] = {
    EVENT_KIND: FuzyEvent,
    accounts.ACCOUNT_KIND: accounts.FuzyAccount,
    accounts.USER_KIND: accounts.FuzyUser,
}
"""The body of each envelope kind (and endpoint)."""


def validate_items(raw: bytes, kind: str) -> list[tuple[Any, msgspec.Raw]]:
    """A body holding one ``kind`` object or a list of them, each decoded and checked.

    Every failing field of every item is reported at once, named ``[i].field`` in a list.
    """
    schema = SCHEMAS[kind]
    if raw.lstrip()[:1] != b"[":
        single = decode(raw, schema, what=kind, every_field=True)
        errors: list[FieldError] = []
        _check(single, "", errors)
        if errors:
            raise InvalidInput(f"invalid {kind}", errors)
        return [(single, msgspec.Raw(raw))]
    items = decode(raw, list[msgspec.Raw], what=kind)
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(f"invalid {kind}", [FieldError("$", f"send 1 to {MAX_ITEMS} items")])
    decoded: list[tuple[Any, msgspec.Raw]] = []
    errors = []
    for index, item in enumerate(items):
        at = f"[{index}]."
        try:
            value = decode(bytes(item), schema, what=kind, prefix=at, every_field=True)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            continue
        _check(value, at, errors)
        decoded.append((value, item))
    if errors:
        raise InvalidInput(f"invalid {kind}", errors)
    return decoded


def _check(item: Any, at: str, errors: list[FieldError]) -> None:
    """What the schema cannot say: who an event is about, consistent account trees."""
    if isinstance(item, FuzyEvent):
        if text(item.user.userId) is None and text(item.user.accountId) is None:
            errors.append(FieldError(at + "user.userId", "required (or user.accountId)"))
    elif isinstance(item, accounts.FuzyUser):
        accounts.check_user(item, at, errors)
    elif isinstance(item, accounts.FuzyAccount):
        accounts.check_account(item, at, errors)


# -- mapping to the canonical model (worker side, pure) --------------------------------

_TYPES = {
    "page_view": EventType.PAGE,
    "pageview": EventType.PAGE,
    "page": EventType.PAGE,
    "screen_view": EventType.SCREEN,
    "click": EventType.CLICK,
    "button_click": EventType.CLICK,
}


def event_type(event_name: str) -> EventType:
    """``page_view``, ``page_view/pricing`` and ``/home`` are page views; see the module doc."""
    if event_name.startswith("/"):
        return EventType.PAGE
    return _TYPES.get(event_name.partition("/")[0].lower(), EventType.TRACK)


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == accounts.ACCOUNT_KIND:
        return accounts.normalise_account(envelope)
    if envelope.kind == accounts.USER_KIND:
        return accounts.normalise_user(envelope)
    return _normalise_event(envelope)


def _normalise_event(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, FuzyEvent)
    user = body.user
    user_id, account_id = text(user.userId), text(user.accountId)
    payment_ids = {n: v for n in PAYMENT_FIELDS if (v := text(getattr(user, n))) is not None}
    users: tuple[UserChange, ...] = ()
    changed_accounts: tuple[AccountChange, ...] = ()
    if user_id is not None:
        users = (UserChange(user_id, account_id, payment_ids=payment_ids or None),)
    elif account_id is not None:
        changed_accounts = (AccountChange(account_id, payment_ids=payment_ids or None),)
    properties = dict(body.metadata or {})
    if body.tags:
        properties["tags"] = list(body.tags)
    context = client_context(None, None, envelope.ip, envelope.user_agent)
    if body.eventType.startswith("/"):
        context["page"] = {"path": body.eventType}
    event = new_event(
        envelope,
        message_id=text(body.eventId),
        name=body.eventType,
        type=event_type(body.eventType),
        timestamp=body.timestamp,
        user_id=user_id,
        account_id=account_id,
        session_id=text(body.sessionId),
        properties=properties,
        context=context,
    )
    return Normalised(events=(event,), users=users, accounts=changed_accounts)


DIALECT = Dialect(NAME, "Fuzy", normalise)
