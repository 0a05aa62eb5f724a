"""Fuzy's ``/v3/account`` and ``/v3/user`` bodies (seeds/000_750887f3fe2e5c85.txt).

The page names these endpoints ("associate users with accounts, and link accounts
to their parent accounts and payment processor ids") but no field names, and the
SDK it links (fuzy-js) only sends events; so these bodies are ours, kept to the
page's words. An account may name its parent (``parent_id``, or a nested
``parent`` object, to any depth) and its payment-processor ids; a user says which
account it belongs to. Events (``sightline.dialects.fuzy``) carry the SDK's own
user object instead, which is enough on its own, as the page says.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sightline.dialects.base import new_event, trait_ops
from sightline.dialects.fields import Email, Id, Mobile, Name, PaymentIds, Properties
from sightline.envelope import Envelope
from sightline.errors import FieldError
from sightline.model import AccountChange, EventType, Normalised, UserChange

MAX_ACCOUNT_DEPTH = 32
ACCOUNT_KIND = "account"
USER_KIND = "user"


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


# -- validation ------------------------------------------------------------------------


def check_account(account: FuzyAccount, at: str, errors: list[FieldError]) -> None:
    """Consistent parent ids, no cycles, no deeper than :data:`MAX_ACCOUNT_DEPTH`."""
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


def check_user(user: FuzyUser, at: str, errors: list[FieldError]) -> None:
    if user.account is not None:
        if user.account_id is not None and user.account_id != user.account.id:
            errors.append(FieldError(at + "account_id", "differs from account.id"))
        check_account(user.account, at + "account.", errors)


# -- mapping to the canonical model (worker side, pure) --------------------------------


def account_chain(account: FuzyAccount | None) -> list[AccountChange]:
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


def user_change(user: FuzyUser) -> UserChange:
    traits: dict[str, Any] = dict(user.traits or {})
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


def normalise_account(envelope: Envelope) -> Normalised:
    """An account call: the account and its parents, recorded as a ``group`` event."""
    account = msgspec.convert(envelope.body, FuzyAccount)
    event = new_event(
        envelope,
        name="group",
        type=EventType.GROUP,
        account_id=account.id,
        properties=dict(account.traits or {}),
    )
    return Normalised(events=(event,), accounts=tuple(account_chain(account)))


def normalise_user(envelope: Envelope) -> Normalised:
    """A user call: the user (and its account tree), recorded as an ``identify`` event."""
    user = msgspec.convert(envelope.body, FuzyUser)
    change = user_change(user)
    event = new_event(
        envelope,
        name="identify",
        type=EventType.IDENTIFY,
        user_id=user.id,
        account_id=change.account_external_id,
        properties=dict(user.traits or {}),
    )
    return Normalised(events=(event,), users=(change,), accounts=tuple(account_chain(user.account)))
