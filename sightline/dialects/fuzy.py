"""The Fuzy dialect: products, accounts, users and events (seeds/000_750887f3fe2e5c85.txt).

The page names the concepts and endpoints but no field names, so the wire
schema below is ours, kept to the page's words: an event has a ``description``
(its name), a ``timestamp``, a ``user`` and/or ``account``, and a ``product``
(the key's product when left out). A user object may say which account it
belongs to and give its payment-processor ids; an account may name its parent
(``parent_id``, or a nested ``parent`` object, to any depth). Sending those in
events is enough; ``/v3/account`` and ``/v3/user`` are for the rest.

Invalid input is 400 naming every failing field. Accounts and users (from events
or their own endpoints) travel as envelopes like events: ordered with the events
that mention them, idempotent, never lost. Endpoints: ``collector.endpoints.fuzy``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event, trait_ops
from sightline.dialects.decoding import decode
from sightline.dialects.fields import Email, Id, Mobile, Name, PaymentIds, Properties, Text
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import AccountChange, EventType, Normalised, UserChange

NAME = "fuzy"
MAX_BODY_BYTES = 512 * 1024
MAX_ITEMS = 500
MAX_ACCOUNT_DEPTH = 32


# -- wire schema -----------------------------------------------------------------------


class FuzyAccount(msgspec.Struct, kw_only=True):
    """A corporate customer; ``parent`` / ``parent_id`` place it under another one."""

    id: Id
    name: Name | None = None
    parent_id: Id | None = None
    parent: FuzyAccount | None = None
    payment_ids: PaymentIds | None = None
    traits: Properties | None = None


class FuzyUser(msgspec.Struct, kw_only=True):
    """A person; ``account`` / ``account_id`` say which account they belong to."""

    id: Id
    name: Name | None = None
    email: Email | None = None
    mobile: Mobile | None = None
    account_id: Id | None = None
    account: FuzyAccount | None = None
    payment_ids: PaymentIds | None = None
    traits: Properties | None = None


class FuzyContext(msgspec.Struct, kw_only=True):
    """Where the event happened; ``ip`` / ``userAgent`` default to the HTTP peer's."""

    ip: Text | None = None
    userAgent: Text | None = None
    url: Text | None = None
    path: Text | None = None
    title: Text | None = None
    referrer: Text | None = None


FuzyEventType = Literal["page_view", "click", "notification", "screen_view", "custom"]
_EVENT_TYPES = {
    "page_view": EventType.PAGE,
    "click": EventType.CLICK,
    "screen_view": EventType.SCREEN,
    "notification": EventType.TRACK,
    "custom": EventType.TRACK,
}


class FuzyEvent(msgspec.Struct, kw_only=True):
    """One event: a description, a timestamp, a user and/or account, a product."""

    description: Name
    timestamp: datetime
    id: Id | None = None
    """The client's idempotency key; a retry with the same id stores nothing twice."""
    product: Id | None = None
    type: FuzyEventType = "custom"
    user: FuzyUser | None = None
    user_id: Id | None = None
    account: FuzyAccount | None = None
    account_id: Id | None = None
    properties: Properties | None = None
    context: FuzyContext | None = None


# -- validation ------------------------------------------------------------------------


def validate_items(raw: bytes, schema: type[Any], what: str) -> list[tuple[Any, msgspec.Raw]]:
    """A body holding one object or a list of them, each decoded and checked.

    Every failing field of every item is reported at once, named ``[i].field`` in a list.
    """
    if raw.lstrip()[:1] != b"[":
        single = decode(raw, schema, what=what)
        errors: list[FieldError] = []
        _check(single, "", errors)
        if errors:
            raise InvalidInput(f"invalid {what}", errors)
        return [(single, msgspec.Raw(raw))]
    items = decode(raw, list[msgspec.Raw], what=what)
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(f"invalid {what}", [FieldError("$", f"send 1 to {MAX_ITEMS} items")])
    decoded: list[tuple[Any, msgspec.Raw]] = []
    errors = []
    for index, item in enumerate(items):
        at = f"[{index}]."
        try:
            value = decode(bytes(item), schema, what=what, prefix=at)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            continue
        _check(value, at, errors)
        decoded.append((value, item))
    if errors:
        raise InvalidInput(f"invalid {what}", errors)
    return decoded


def _check(item: Any, at: str, errors: list[FieldError]) -> None:
    """What the schema cannot say: consistent ids, no cycles, who an event is about."""
    if isinstance(item, FuzyEvent):
        _check_event(item, at, errors)
    elif isinstance(item, FuzyUser):
        _check_user(item, at, errors)
    elif isinstance(item, FuzyAccount):
        _check_account(item, at, errors)


def _check_account(account: FuzyAccount, at: str, errors: list[FieldError]) -> None:
    depth, current, seen = 0, account, {account.id}
    while current.parent is not None:
        depth += 1
        if current.parent_id is not None and current.parent_id != current.parent.id:
            errors.append(FieldError(at + "parent_id", "differs from parent.id"))
        current = current.parent
        at += "parent."
        if current.id in seen:
            errors.append(FieldError(at + "id", "an account cannot be its own ancestor"))
            return
        seen.add(current.id)
        if depth > MAX_ACCOUNT_DEPTH:
            errors.append(FieldError(at.rstrip("."), f"more than {MAX_ACCOUNT_DEPTH} levels"))
            return
    if current.parent_id is not None and current.parent_id in seen:
        errors.append(FieldError(at + "parent_id", "an account cannot be its own ancestor"))


def _check_user(user: FuzyUser, at: str, errors: list[FieldError]) -> None:
    if user.account is not None:
        if user.account_id is not None and user.account_id != user.account.id:
            errors.append(FieldError(at + "account_id", "differs from account.id"))
        _check_account(user.account, at + "account.", errors)


def _check_event(event: FuzyEvent, at: str, errors: list[FieldError]) -> None:
    named = (event.user, event.user_id, event.account, event.account_id)
    if all(v is None for v in named):
        errors.append(FieldError(at + "user", "an event needs a user or an account"))
    if event.user is not None:
        if event.user_id is not None and event.user_id != event.user.id:
            errors.append(FieldError(at + "user_id", "differs from user.id"))
        _check_user(event.user, at + "user.", errors)
    if event.account is not None:
        if event.account_id is not None and event.account_id != event.account.id:
            errors.append(FieldError(at + "account_id", "differs from account.id"))
        _check_account(event.account, at + "account.", errors)


# -- mapping to the canonical model (worker side, pure) --------------------------------


def _account_chain(account: FuzyAccount | None) -> list[AccountChange]:
    """``account`` and its nested parents as changes, the root first."""
    chain: list[AccountChange] = []
    current = account
    while current is not None:
        parent = current.parent.id if current.parent is not None else current.parent_id
        chain.append(
            AccountChange(
                external_id=current.id,
                name=current.name,
                parent_external_id=parent,
                traits=dict(current.traits) if current.traits else None,
                payment_ids=dict(current.payment_ids) if current.payment_ids else None,
            )
        )
        current = current.parent
    return chain[::-1]


def _user_change(user: FuzyUser) -> UserChange:
    traits = dict(user.traits or {})
    if user.name is not None:
        traits["name"] = user.name
    return UserChange(
        external_id=user.id,
        account_external_id=user.account.id if user.account is not None else user.account_id,
        email=user.email,
        mobile=user.mobile,
        payment_ids=dict(user.payment_ids) if user.payment_ids else None,
        ops=trait_ops(traits),
    )


def _context(given: FuzyContext | None, envelope: Envelope) -> dict[str, Any]:
    given = given or FuzyContext()
    context = client_context(given.ip, given.userAgent, envelope.ip, envelope.user_agent)
    page = {
        k: v
        for k, v in (
            ("url", given.url),
            ("path", given.path),
            ("title", given.title),
            ("referrer", given.referrer),
        )
        if v is not None
    }
    if page:
        context["page"] = page
    return context


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == "account":
        account = msgspec.convert(envelope.body, FuzyAccount)
        event = new_event(
            envelope,
            name="group",
            type=EventType.GROUP,
            account_id=account.id,
            properties=dict(account.traits or {}),
        )
        return Normalised(events=(event,), accounts=tuple(_account_chain(account)))
    if envelope.kind == "user":
        user = msgspec.convert(envelope.body, FuzyUser)
        change = _user_change(user)
        event = new_event(
            envelope,
            name="identify",
            type=EventType.IDENTIFY,
            user_id=user.id,
            account_id=change.account_external_id,
            properties=dict(user.traits or {}),
        )
        return Normalised(
            events=(event,), users=(change,), accounts=tuple(_account_chain(user.account))
        )
    return _normalise_event(envelope)


def _normalise_event(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, FuzyEvent)
    user = body.user
    users = (_user_change(user),) if user is not None else ()
    accounts = _account_chain(user.account if user is not None else None)
    accounts += _account_chain(body.account)
    account_id = (
        body.account.id
        if body.account is not None
        else body.account_id or (users[0].account_external_id if users else None)
    )
    event = new_event(
        envelope,
        message_id=body.id,
        name=body.description,
        type=_EVENT_TYPES[body.type],
        timestamp=body.timestamp,
        user_id=user.id if user is not None else body.user_id,
        account_id=account_id,
        properties=dict(body.properties or {}),
        context=_context(body.context, envelope),
    )
    return Normalised(events=(event,), users=users, accounts=tuple(accounts))


DIALECT = Dialect(NAME, "Fuzy", normalise)
