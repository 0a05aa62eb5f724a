"""The GA4 Measurement Protocol dialect: ``POST /mp/collect`` and ``/debug/mp/collect``.

Body (developers.google.com/analytics/devguides/collection/protocol/ga4/reference)::

    {"client_id": "...", "user_id"?, "timestamp_micros"?, "non_personalized_ads"?,
     "user_properties"?: {"name": {"value": ..., "timestamp_micros"?}},
     "ip_override"?, "device"?: {"language", "screen_resolution", ...}, "consent"?,
     "user_location"?,
     "events": [{"name": "...", "params"?: {...}, "timestamp_micros"?}]}

``measurement_id`` (or ``firebase_app_id``, with ``app_instance_id`` for ``client_id``)
names the product: its write key or a registered GA4 id; ``api_secret`` must be the
product's **server key** (GA4's rule: the secret authenticates the sender).

Each event becomes one canonical event: ``page_view`` a page view (``page_location``,
``page_referrer``, ``page_title`` as ``context.page``; named by its title), any other
event a ``track`` event with its params as properties; ``session_id`` is the session,
``client_id`` the anonymous id, ``user_id`` the user (``client_id`` aliased to it),
``user_properties`` the user's traits (``context.traits`` as well). The event time is
the event's ``timestamp_micros``, else the request's, else the receive time. GA4 sends no
message id: each event's is derived from the request's content and its place in it
(``sightline.dialects.dedup``), so a retried request is stored once.

Decision: GA4's ``/mp/collect`` answers 2xx even to malformed payloads and drops them
silently. Sightline answers 204 to what it stored and a 400 naming every failing field
(GA4's validation codes in the reasons) to what it did not, so a sender that checks the
status learns of the loss; ``/debug/mp/collect`` answers exactly like GA4's validation
server, ``{"validationMessages": [...]}`` with 200, and stores nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event, trait_ops
from sightline.dialects.dedup import content_id
from sightline.dialects.fields import Id
from sightline.envelope import Envelope
from sightline.model import AliasChange, EventType, Normalised, UserChange

NAME = "ga4"
KIND = "measurement"
MAX_BODY_BYTES = 130 * 1024  # GA4: "The total size of the POST body must be 130 KB or less"
PAGE_PARAMS = {"page_location": "url", "page_referrer": "referrer", "page_title": "title"}


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
"""GA4: a user_id of at most 256 characters."""


class Ga4Event(msgspec.Struct, kw_only=True):
    name: str = ""
    params: dict[str, Any] | None = None
    timestamp_micros: int | None = None


class UserProperty(msgspec.Struct, kw_only=True):
    value: str | int | float | bool | None = None
    timestamp_micros: int | None = None


class Measurement(msgspec.Struct, kw_only=True):
    """The body of ``POST /mp/collect`` (other members are accepted and ignored)."""

    client_id: Id | None = None
    app_instance_id: Id | None = None
    user_id: UserId | None = None
    timestamp_micros: int | None = None
    user_properties: dict[str, UserProperty] | None = None
    non_personalized_ads: bool | None = None
    ip_override: str | None = None
    device: dict[str, Any] | None = None
    consent: dict[str, str] | None = None
    user_location: dict[str, str] | None = None
    events: list[Ga4Event] | None = None


def time_of(micros: int) -> datetime | None:
    """``timestamp_micros`` as a time, or ``None`` when it is none."""
    try:
        return datetime.fromtimestamp(micros / 1_000_000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


# -- mapping to the canonical model (worker side, pure) --------------------------------


def normalise(envelope: Envelope) -> Normalised:
    m = msgspec.convert(envelope.body, Measurement)
    client_id = m.client_id or m.app_instance_id
    traits = {k: p.value for k, p in (m.user_properties or {}).items()}
    context = client_context(m.ip_override, None, envelope.ip, envelope.user_agent)
    device = m.device or {}
    if isinstance(device.get("language"), str):
        context["locale"] = device["language"]
    size = str(device.get("screen_resolution", "")).split("x")
    if len(size) == 2 and all(s.isdigit() for s in size):
        context["screen"] = {"width": int(size[0]), "height": int(size[1])}
    if traits:
        context["traits"] = traits
    if m.non_personalized_ads is not None:
        context["nonPersonalizedAds"] = m.non_personalized_ads
    if m.consent:
        context["consent"] = dict(m.consent)  # ad_user_data, ad_personalization: GRANTED...
    if m.user_location:
        context["location"] = dict(m.user_location)  # city, region_id, country_id...
    events = tuple(
        _event_of(envelope, m, index, event, client_id, context)
        for index, event in enumerate(m.events or [])
    )
    users: tuple[UserChange, ...] = ()
    aliases: tuple[AliasChange, ...] = ()
    if m.user_id:
        if traits:
            users = (UserChange(external_id=m.user_id, ops=trait_ops(traits)),)
        if client_id:
            aliases = (AliasChange(alias=client_id, user_external_id=m.user_id, kind="anonymous"),)
    return Normalised(events=events, users=users, aliases=aliases)


def _event_of(
    envelope: Envelope,
    m: Measurement,
    index: int,
    event: Ga4Event,
    client_id: str | None,
    base: dict[str, Any],
) -> Any:
    params = dict(event.params or {})
    session = params.pop("session_id", None)
    page = {PAGE_PARAMS[k]: str(params.pop(k)) for k in list(params) if k in PAGE_PARAMS}
    context = dict(base)
    if page:
        url = page.get("url", "")
        path, _, query = url.partition("://")[2].partition("/")[2].partition("?")
        if url:
            page["path"] = "/" + path.split("#", 1)[0]
            if query:
                page["search"] = "?" + query.split("#", 1)[0]
        context["page"] = page
    micros = event.timestamp_micros or m.timestamp_micros
    is_page = event.name == "page_view"
    parts = [client_id, m.user_id, str(micros or ""), str(index), event.name]
    parts.append(msgspec.json.encode(event.params or {}).decode())
    return new_event(
        envelope,
        index=index,
        message_id=content_id(envelope, parts, unique=micros is not None),
        name=(page.get("title") or event.name) if is_page else event.name,
        type=EventType.PAGE if is_page else EventType.TRACK,
        timestamp=time_of(micros) if micros else None,
        user_id=m.user_id,
        anonymous_id=client_id,
        session_id=str(session) if session not in (None, "") else None,
        properties=params,
        context=context,
    )


DIALECT = Dialect(NAME, "GA4 Measurement Protocol", normalise)
