"""The Umami dialect: ``POST /api/send`` (``collector.endpoints.umami``).

The body is Umami's collection call, as its tracker (umami-software/umami,
src/tracker/index.js) and its Node client (``@umami/node``) send it::

    {"type": "event" | "identify",
     "payload": {"website", "hostname", "screen", "language", "title", "url",
                 "referrer", "name", "data", "id", "tag", "timestamp", "vid",
                 "ip", "userAgent"}}

- ``event`` without ``name`` is a page view, with ``name`` a custom event whose
  properties are ``data``;
- ``identify`` sets ``data`` as traits: of the user ``id`` (Umami's distinct id) when
  given, else it is recorded for the anonymous visitor only. It needs ``data`` or ``id``;
- ``id`` on any call is the event's user (and links the visitor to that user);
- ``url`` may be a path (Umami's older tracker sends ``location.pathname + search``,
  percent-encoded, and the title encoded as a URI component): it is read against
  ``https://<hostname>``, as Umami reads it; ``referrer`` likewise;
- ``screen`` ``"1920x1080"`` is ``context.screen``, ``language`` ``context.locale``,
  ``tag`` ``context.tag``; ``timestamp`` (Unix seconds) is the event's time;
  ``ip`` / ``userAgent`` are the device's, for calls a server forwards.

Umami's requests carry no visitor id (its newest tracker adds ``vid``, kept in the
page's storage). The collector chooses one: ``vid``, else the one of the ``cache``
token it answered earlier (the tracker sends it back as ``x-umami-cache``), else the
day's cookieless id (``sightline.cookieless``); and the visit (``session_id``): the
token's when it is under 30 minutes old, else one per visitor and UTC hour, as Umami
derives its visits. It wraps the call as ``{"visitor", "visit", "call"}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote, urljoin, urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event, trait_ops
from sightline.dialects.decoding import decode
from sightline.dialects.fields import Id, Name, Text
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import AliasChange, EventType, Normalised, UserChange

NAME = "umami"
MAX_BODY_BYTES = 64 * 1024
TYPES = ("event", "identify")
VISIT_SECONDS = 30 * 60
"""A cache token older than this starts a new visit (Umami's rule)."""
MIN_TIMESTAMP, MAX_TIMESTAMP = 0, 4_102_444_800  # 1970 .. 2100, in seconds

Short = Annotated[str, msgspec.Meta(max_length=64)]


class UmamiPayload(msgspec.Struct, kw_only=True):
    website: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    hostname: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    screen: Short | None = None
    language: Short | None = None
    title: Text | None = None
    url: Text | None = None
    referrer: Text | None = None
    name: Name | None = None
    data: dict[str, Any] | None = None
    id: Id | None = None
    tag: Name | None = None
    timestamp: int | None = None
    vid: Id | None = None
    ip: Short | None = None
    userAgent: Text | None = None


class UmamiCall(msgspec.Struct, kw_only=True):
    """The body of ``POST /api/send``."""

    type: str
    payload: UmamiPayload


def validate(raw: bytes) -> UmamiCall:
    """The call, or :class:`InvalidInput` naming every failing field."""
    call = decode(raw, UmamiCall, what="collection call")
    payload = call.payload
    errors: list[FieldError] = []
    if call.type not in TYPES:
        errors.append(FieldError("type", f"must be one of {', '.join(TYPES)}"))
    if not payload.website:
        errors.append(FieldError("payload.website", "required"))
    if call.type == "identify" and payload.data is None and payload.id is None:
        errors.append(FieldError("payload.data", "Data required."))
    if payload.timestamp is not None and not MIN_TIMESTAMP <= payload.timestamp <= MAX_TIMESTAMP:
        errors.append(FieldError("payload.timestamp", "must be Unix seconds (1970 to 2100)"))
    if errors:
        raise InvalidInput("invalid collection call", errors)
    return call


# -- the cache token: what the tracker sends back as ``x-umami-cache`` --------------------


class Cache(msgspec.Struct, frozen=True):
    """Who the last call was from: product, visitor, visit and when (Unix seconds)."""

    p: str
    v: Id
    s: Id
    t: int

    def visit_at(self, product_id: str, now: int) -> str | None:
        """The visit this token continues for ``product_id`` at ``now``, if it still runs."""
        return self.s if self.p == product_id and 0 <= now - self.t < VISIT_SECONDS else None


_cache_json = msgspec.json.Decoder(Cache)
_answer = msgspec.json.Decoder(dict[str, Any])


def read_cache(header: str | None) -> Cache | None:
    """The token of an ``x-umami-cache`` header, or ``None`` for anything else.

    Umami's older tracker keeps the whole answer text as its cache, so an answer
    (``{"cache": ...}``) is read too. The token is a hint, not a credential: it is not
    signed, because the product is always authorised from ``website`` and a visitor id
    is the client's to choose in every dialect.
    """
    if not header or len(header) > 1024:
        return None
    try:
        if header.startswith("{"):
            token = _answer.decode(header).get("cache")
            return read_cache(token) if isinstance(token, str) else None
        return _cache_json.decode(header.encode())
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_cache(cache: Cache) -> str:
    return msgspec.json.encode(cache).decode()


# -- mapping to the canonical model (worker side, pure) --------------------------------


class Wrapped(msgspec.Struct):
    """An envelope's body: the visitor and visit the collector chose, and the call."""

    visitor: str
    visit: str
    call: UmamiCall


def page_context(payload: UmamiPayload) -> dict[str, Any]:
    """``context.page`` in Segment's layout, the URL read against the hostname."""
    base = f"https://{payload.hostname or 'localhost'}/"
    try:
        url = urljoin(base, payload.url or "/")
        parts = urlsplit(url)
    except ValueError:
        return {"url": payload.url or ""}
    page: dict[str, Any] = {
        "url": url,
        "path": parts.path or "/",
        "search": f"?{parts.query}" if parts.query else "",
    }
    if parts.fragment:
        page["hash"] = "#" + parts.fragment
    if payload.title:
        page["title"] = unquote(payload.title)
    if payload.referrer:
        try:
            page["referrer"] = urljoin(base, payload.referrer)
        except ValueError:
            page["referrer"] = payload.referrer
    return page


def _screen(text: str | None) -> dict[str, int] | None:
    width, _, height = (text or "").partition("x")
    if width.isdigit() and height.isdigit() and len(width) < 7 and len(height) < 7:
        return {"width": int(width), "height": int(height)}
    return None


def normalise(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, Wrapped)
    payload = body.call.payload
    data = dict(payload.data or {})
    context = client_context(payload.ip, payload.userAgent, envelope.ip, envelope.user_agent)
    context["page"] = page_context(payload)
    screen = _screen(payload.screen)
    if screen is not None:
        context["screen"] = screen
    if payload.language:
        context["locale"] = payload.language
    if payload.tag:
        context["tag"] = payload.tag
    if body.call.type == "identify":
        kind, name = EventType.IDENTIFY, "identify"
    elif payload.name:
        kind, name = EventType.TRACK, payload.name
    else:
        kind, name = EventType.PAGE, "page_view"
    timestamp = None
    if payload.timestamp is not None:
        timestamp = datetime.fromtimestamp(payload.timestamp, UTC)
    event = new_event(
        envelope,
        name=name,
        type=kind,
        timestamp=timestamp,
        user_id=payload.id,
        anonymous_id=body.visitor,
        session_id=body.visit,
        properties=data,
        context=context,
    )
    users: tuple[UserChange, ...] = ()
    aliases: tuple[AliasChange, ...] = ()
    if payload.id is not None:
        if kind is EventType.IDENTIFY:
            users = (
                UserChange(external_id=payload.id, ops=trait_ops(data), anonymous_id=body.visitor),
            )
        aliases = (AliasChange(alias=body.visitor, user_external_id=payload.id, kind="anonymous"),)
    return Normalised(events=(event,), users=users, aliases=aliases)


DIALECT = Dialect(NAME, "Umami", normalise)
