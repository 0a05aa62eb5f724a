"""The PostHog dialect: what posthog-js, posthog-python and PostHog's capture API send.

A capture request (``sightline.dialects.posthog_wire`` undoes its transport) holds one
event, a list of events, or ``{"api_key", "batch": [...], "sent_at"}``. Each event
becomes one envelope; the request's ``sent_at`` (or the ``_`` query parameter, in
milliseconds) travels as the envelope's, an event's own ``sent_at`` wins.

Authentication is PostHog's project token (``api_key`` / ``token`` in the body, else the
first event's ``token`` / ``api_key`` / ``properties.token``): the product's write key, or
a PostHog token the product registered (``sightline products ids ID add posthog phc_…``).
Every event of a request must name the same token.

Mapping to the canonical model, where PostHog's documentation leaves a choice:

- **Who.** ``distinct_id`` (else ``properties.distinct_id``) is the user id, unless the
  event says it is anonymous: ``$is_identified: false``, else ``$process_person_profile:
  false``, else a ``distinct_id`` equal to ``$device_id`` (posthog-js before it had
  ``$is_identified``). Anonymous ids go to ``anonymous_id``. An identified event's
  ``$device_id`` is its ``anonymous_id`` (linked to the user, as Segment's ``anonymousId``).
  Server SDKs send neither flag: their ``distinct_id`` is the user's.
- ``$identify``: the user ``distinct_id``, with ``$anon_distinct_id`` linked to it.
- ``$create_alias``: an identified sender (``$is_identified: true``, posthog-js's
  ``alias()`` after ``identify()``) adds ``properties.alias`` as another id of its
  user; otherwise (posthog-js before identify, every server SDK's ``alias(previous_id,
  distinct_id)``) ``properties.alias`` is the user and ``distinct_id`` the previous id.
- ``$groupidentify``: the account ``$group_key`` (its ``$group_type`` kept in the
  account's traits), traits from ``$group_set`` (``name`` names it). An identified
  sender whose ``$groups`` holds that key joins the account. ``$groups`` on any event
  gives the event its account: the first group's key.
- ``$set`` / ``$set_once`` (top level or in ``properties``) and ``$unset`` (a list of
  names) on an identified event change the user's profile; ``$set_once`` never
  overwrites. Anonymous events change no profile (PostHog's ``identified_only``).
- ``$pageview`` is a page view (``page_view``), ``$pageleave`` engagement,
  ``$autocapture`` of a click a ``click``, ``$screen`` a screen; ``$identify``,
  ``$set`` and ``$set_once`` are ``identify`` events. Other events keep their names.
- ``uuid`` is the message id; ``timestamp`` with ``sent_at`` is corrected by the worker
  (``received + (timestamp - sent_at)``, PostHog's rule); an ``offset`` (ms before the
  request) without a ``timestamp`` counts back from the receive time.
- Context as Segment lays it out: ``page`` (``$current_url``, ``$pathname``, ``title``,
  ``$referrer`` unless ``$direct``), ``locale`` (``$browser_language``), ``screen``,
  ``library`` (``$lib``), ``timezone``, ``userAgent`` (``$raw_user_agent``, else the
  request's), ``ip`` (``$ip``, else the request's). Properties are kept as sent, less
  the token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event, trait_ops
from sightline.dialects.fields import MAX_ID, is_ip_address
from sightline.dialects.posthog_wire import (
    KIND,
    MAX_BODY_BYTES,
    NAME,
    Capture,
    PostHogEvent,
    distinct_id_of,
    text,
    validate,
)
from sightline.envelope import Envelope
from sightline.model import (
    AccountChange,
    AliasChange,
    AttributeOp,
    AttributeOpKind,
    Event,
    EventType,
    Normalised,
    UserChange,
)

# -- mapping to the canonical model (worker side, pure) --------------------------------


def _is_anonymous(props: dict[str, Any], distinct_id: str) -> bool:
    identified = props.get("$is_identified")
    if isinstance(identified, bool):
        return not identified
    if props.get("$process_person_profile") is False:
        return True
    return props.get("$device_id") == distinct_id


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    """An id as text, when it fits the store's id columns (else it is left out)."""
    found = text(value)
    return found if found is not None and len(found) <= MAX_ID else None


def _email(value: Any) -> str | None:
    return value if isinstance(value, str) and "@" in value and len(value) <= 320 else None


def _context(props: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
    ip = _str(props.get("$ip"))
    context = client_context(
        ip if ip and is_ip_address(ip) else None,
        _str(props.get("$raw_user_agent")),
        envelope.ip,
        envelope.user_agent,
    )
    url = _str(props.get("$current_url"))
    if url:
        parts = urlsplit(url)
        page = {
            "url": url,
            "path": _str(props.get("$pathname")) or parts.path or "/",
            "search": f"?{parts.query}" if parts.query else None,
            "title": _str(props.get("title")) or _str(props.get("$title")),
            "referrer": _str(props.get("$referrer")),
        }
        if page["referrer"] == "$direct":
            page["referrer"] = None
        context["page"] = {k: v for k, v in page.items() if v is not None}
    if _str(props.get("$browser_language")):
        context["locale"] = props["$browser_language"]
    width, height = props.get("$screen_width"), props.get("$screen_height")
    if isinstance(width, int) and isinstance(height, int):
        context["screen"] = {"width": width, "height": height}
    if _str(props.get("$lib")):
        context["library"] = {"name": props["$lib"], "version": props.get("$lib_version")}
    if _str(props.get("$timezone")):
        context["timezone"] = props["$timezone"]
    return context


_RENAMED: dict[str, tuple[EventType, str]] = {
    "$pageview": (EventType.PAGE, "page_view"),
    "$pageleave": (EventType.ENGAGEMENT, "engagement"),
    "$identify": (EventType.IDENTIFY, "identify"),
    "$set": (EventType.IDENTIFY, "identify"),
    "$set_once": (EventType.IDENTIFY, "identify"),
    "$create_alias": (EventType.ALIAS, "alias"),
    "$groupidentify": (EventType.GROUP, "group"),
}


def _type_and_name(event: PostHogEvent) -> tuple[EventType, str]:
    props = event.properties
    if event.event == "$autocapture" and props.get("$event_type") == "click":
        return EventType.CLICK, "click"
    if event.event == "$screen":
        return EventType.SCREEN, _id(props.get("$screen_name")) or "screen_view"
    return _RENAMED.get(event.event, (EventType.TRACK, event.event))


def _profile_ops(event: PostHogEvent) -> tuple[AttributeOp, ...]:
    props = event.properties
    to_set = {**(_dict(props.get("$set"))), **(event.set or {})}
    once = {**(_dict(props.get("$set_once"))), **(event.set_once or {})}
    unset = props.get("$unset")
    ops = trait_ops({k: v for k, v in to_set.items() if len(k) <= MAX_ID})
    ops += tuple(
        AttributeOp(k, AttributeOpKind.SET_ONCE, v) for k, v in once.items() if len(k) <= MAX_ID
    )
    if isinstance(unset, list):
        ops += tuple(AttributeOp(n, AttributeOpKind.REMOVE) for n in unset if _id(n) == n)
    return ops


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _account(props: dict[str, Any]) -> str | None:
    groups = _dict(props.get("$groups"))
    return next((key for key in map(_id, groups.values()) if key), None)


def normalise(envelope: Envelope) -> Normalised:
    event = msgspec.convert(envelope.body, PostHogEvent, strict=False)
    props = event.properties
    distinct_id = distinct_id_of(event)
    if distinct_id is None:
        raise ValueError("a PostHog event without distinct_id")
    anonymous = _is_anonymous(props, distinct_id) and event.event != "$identify"
    user_id = None if anonymous else distinct_id
    anonymous_id = distinct_id if anonymous else _id(props.get("$device_id"))
    if event.event == "$identify":
        anonymous_id = _id(props.get("$anon_distinct_id")) or anonymous_id
    if anonymous_id == user_id:
        anonymous_id = None
    kind, name = _type_and_name(event)
    users: list[UserChange] = []
    accounts: tuple[AccountChange, ...] = ()
    aliases: list[AliasChange] = []
    account_id = _account(props)
    if event.event == "$create_alias" and _id(props.get("alias")):
        alias = str(_id(props["alias"]))
        if props.get("$is_identified") is not True:
            user_id, alias, anonymous_id = alias, distinct_id, None
        if user_id is not None and alias != user_id:
            aliases.append(AliasChange(alias=alias, user_external_id=user_id))
    elif event.event == "$groupidentify" and _id(props.get("$group_key")):
        key = str(_id(props.get("$group_key")))
        traits = {**_dict(props.get("$group_set"))}
        if _str(props.get("$group_type")):
            traits.setdefault("group_type", props["$group_type"])
        title = _id(traits.get("name")) if isinstance(traits.get("name"), str) else None
        accounts = (AccountChange(external_id=key, name=title, traits=traits),)
        account_id = key
        if user_id is not None and key in map(_id, _dict(props.get("$groups")).values()):
            users.append(UserChange(external_id=user_id, account_external_id=key))
    ops = _profile_ops(event) if user_id is not None else ()
    if user_id is not None and (ops or event.event == "$identify"):
        traits = {**_dict(props.get("$set")), **(event.set or {})}
        users.append(
            UserChange(
                external_id=user_id,
                email=_email(traits.get("email")),
                ops=ops,
                anonymous_id=anonymous_id,
            )
        )
    elif user_id is not None and anonymous_id is not None:
        aliases.append(AliasChange(alias=anonymous_id, user_external_id=user_id, kind="anonymous"))
    return Normalised(
        events=(_event(envelope, event, kind, name, user_id, anonymous_id, account_id),),
        users=tuple(users),
        accounts=accounts,
        aliases=tuple(aliases),
    )


def _event(
    envelope: Envelope,
    event: PostHogEvent,
    kind: EventType,
    name: str,
    user_id: str | None,
    anonymous_id: str | None,
    account_id: str | None,
) -> Event:
    props = event.properties
    timestamp, sent_at = event.timestamp, event.sent_at
    if timestamp is None and event.offset is not None:
        # PostHog's rule for offset: now - offset; nothing left for the worker to correct.
        sent_at = envelope.received_at
        timestamp = sent_at - timedelta(milliseconds=event.offset)
    session = _id(props.get("$session_id"))
    return new_event(
        envelope,
        message_id=event.uuid,
        name=name,
        type=kind,
        timestamp=timestamp,
        sent_at=sent_at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        account_id=account_id,
        session_id=session,
        properties={k: v for k, v in props.items() if k not in ("token", "$token")},
        context=_context(props, envelope),
    )


DIALECT = Dialect(NAME, "PostHog", normalise)
__all__ = ["DIALECT", "KIND", "MAX_BODY_BYTES", "NAME", "Capture", "normalise", "validate"]
