"""The canonical model every dialect is normalised into.

These are the records the worker writes and the query side reads back. They are
plain msgspec structs: cheap to build in the hot path, and encoded to JSON (for
``sightline events list --json``) without a hand-written ``to_dict``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import msgspec

JSONValue = Any
"""A value that came out of a JSON document (None, bool, int, float, str, list, dict)."""


class EventType(str, Enum):
    PAGE = "page"
    SCREEN = "screen"
    TRACK = "track"
    CLICK = "click"
    IDENTIFY = "identify"
    GROUP = "group"
    ALIAS = "alias"
    EXTENSION = "extension"
    ENGAGEMENT = "engagement"


class IpHandling(str, Enum):
    """What a product lets us keep of a client's address (applied before storage)."""

    FULL = "full"
    TRUNCATED = "truncated"
    NONE = "none"


class KeyKind(str, Enum):
    """The kind of product key a payload was accepted with (``Envelope.key``)."""

    WRITE = "write"  # public, embedded in pages: may only send events
    SERVER = "server"  # secret: may also manage products, accounts, users


class ClientIdentity(str, Enum):
    """What a product lets its public write keys change of users and accounts
    (``sightline products policy``; applied by ``sightline/store/effects.py``)."""

    RESTRICTED = "restricted"
    """The default: the write-key policy applies (README, "What a write key can change")."""
    OPEN = "open"
    """A write key may change what a server key may (the behaviour before the policy)."""


class Authority(str, Enum):
    """Whose changes a message's side effects are: what the worker's store applies."""

    SERVER = "server"
    """A server key (or an envelope from a collector before ``Envelope.key``): it may change
    everything, and the users, accounts and attributes it changes become server-owned."""
    CLIENT = "client"
    """A write key of a ``restricted`` product: the write-key policy applies."""
    OPEN_CLIENT = "open_client"
    """A write key of an ``open`` product: it may change everything, and owns nothing."""


def authority_of(key: KeyKind | None, policy: ClientIdentity) -> Authority:
    """Whose changes a message's are: its envelope's key under its product's policy.

    ``None`` (an envelope from a collector before ``Envelope.key``) is applied as it was
    accepted then: as a server key's."""
    if key is not KeyKind.WRITE:
        return Authority.SERVER
    return Authority.OPEN_CLIENT if policy is ClientIdentity.OPEN else Authority.CLIENT


class BotHandling(str, Enum):
    FLAG = "flag"
    DROP = "drop"


class AttributeType(str, Enum):
    BOOL = "bool"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DATE = "date"
    ARRAY = "array"
    OBJECT = "object"


class AttributeOpKind(str, Enum):
    SET = "set"
    SET_ONCE = "set_once"
    """Set only while the attribute is absent (PostHog's ``$set_once``)."""
    REMOVE = "remove"
    INCREMENT = "increment"
    ADD_TO_ARRAY = "add"
    REMOVE_FROM_ARRAY = "remove_from_array"


class AttributeOp(msgspec.Struct, frozen=True):
    """One change to a typed profile attribute.

    ``value`` is the value to set, the amount to increment by, or the items to
    add to / remove from an array; it is ``None`` for ``REMOVE``.
    """

    name: str
    kind: AttributeOpKind
    value: JSONValue = None
    type: AttributeType | None = None


class UserChange(msgspec.Struct, frozen=True):
    """A dialect's request to create or update a user (identify, profile APIs)."""

    external_id: str
    account_external_id: str | None = None
    email: str | None = None
    mobile: str | None = None
    ops: tuple[AttributeOp, ...] = ()
    payment_ids: dict[str, str] | None = None
    anonymous_id: str | None = None
    match_alias: bool = False
    """``external_id`` may be an alias of a known user (Pyze's ``pyze_id``): change that user."""
    match_channels: bool = False
    """A new ``external_id`` joins the user with the same email, else mobile (Gameball's
    channel merging); the message's events are recorded for that user."""


class AccountChange(msgspec.Struct, frozen=True):
    """A dialect's request to create or update an account (group, Fuzy /v3/account)."""

    external_id: str
    name: str | None = None
    parent_external_id: str | None = None
    traits: dict[str, JSONValue] | None = None
    payment_ids: dict[str, str] | None = None


class AliasChange(msgspec.Struct, frozen=True):
    """Link ``alias`` (an anonymous or alternative id) to the user ``user_external_id``."""

    alias: str
    user_external_id: str
    kind: str = "alias"


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """One canonical event, as stored.

    Built by ``sightline.dialects.base.new_event`` (ids, times, product, dialect from
    the envelope); immutable from then on: enrichment returns new events.
    """

    id: str
    message_id: str
    product_id: str
    name: str
    type: EventType
    timestamp: datetime
    received_at: datetime
    sent_at: datetime | None = None
    original_timestamp: datetime | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    account_id: str | None = None
    session_id: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    recording_id: str | None = None
    properties: dict[str, JSONValue] = msgspec.field(default_factory=dict)
    context: dict[str, JSONValue] = msgspec.field(default_factory=dict)
    dialect: str = "native"
    is_bot: bool = False
    is_unused: bool = False


class Normalised(msgspec.Struct, kw_only=True):
    """What one accepted message becomes: its events plus the side effects it asks for.

    Every message yields at least one event (profile updates are recorded as
    ``identify`` events): the first event's (product, message id) is what makes the
    side effects idempotent.
    """

    events: tuple[Event, ...]
    users: tuple[UserChange, ...] = ()
    accounts: tuple[AccountChange, ...] = ()
    aliases: tuple[AliasChange, ...] = ()
    authority: Authority = Authority.SERVER
    """Set by the worker from the envelope's key and the product's policy; dialects leave
    it (they do not know the key)."""
