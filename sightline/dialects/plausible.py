"""The Plausible dialect: ``POST /api/event`` (``collector.endpoints.plausible``).

The body is one JSON event, sent as ``text/plain`` by Plausible's trackers (the
request stays CORS-simple) or as ``application/json``. The rules are Plausible's own
(``Plausible.Ingestion.Request`` in plausible/analytics), short and long names alike:

- ``n`` / ``name`` (required, at most 120 characters; a number is a name, for 404s):
  ``pageview`` is a page view, ``engagement`` an engagement (``sd`` scroll depth in
  percent, ``e`` engaged milliseconds; at least one must be a valid integer), anything
  else a custom event;
- ``u`` / ``url`` (required, at most 2,000 bytes, not a ``data:`` URL); ``h`` /
  ``hashMode`` 1: the fragment is part of the path (hash routers);
- ``d`` / ``domain``: the site, or a comma-separated list of sites (the event counts
  for each); absent: the URL's host. ``www.`` is dropped, as Plausible does;
- ``r`` / ``referrer`` (a string, else ignored; cut at 2,000 characters);
- ``p`` / ``props`` / ``m`` / ``meta``: custom properties, an object or an object in
  a JSON string; list, object, null and blank values are dropped, 30 at most are kept,
  a key over 300 bytes or a value over 2,000 is a 400. Unlike Plausible, which turns
  every value into text, numbers and booleans stay what they were;
- ``$`` / ``revenue``: ``{"amount", "currency"}`` (an object or a JSON string; the
  amount a number or numeric text): the event's ``revenue`` (a number) and
  ``currency`` properties. Anything else there is ignored, as Plausible ignores it;
- ``i`` / ``interactive`` ``false``: ``context.interactive: false`` (the event does
  not end a bounce); ``w``: the viewport width (``context.screen.width``); ``v``: the
  tracker's version, not kept.

No visitor id, no client clock: the collector derives the day's visitor id
(``sightline.cookieless``) and wraps the event as ``{"visitor": id, "event": body}``, one
envelope per product the sites name; the event's time is when it was received.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import decode
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import EventType, Normalised

NAME = "plausible"
KIND = "event"
MAX_BODY_BYTES = 64 * 1024
MAX_NAME = 120
MAX_URL_BYTES = 2000
MAX_PROPS = 30
MAX_PROP_KEY_BYTES = 300
MAX_PROP_VALUE_BYTES = 2000
MAX_ENGAGEMENT_MS = 30 * 24 * 3600 * 1000
"""Plausible ignores larger engaged times (an old tracker's bug)."""
ENGAGEMENT_NEEDS = (
    "engagement event requires a valid integer value for at least one of 'sd' or 'e' fields"
)
PROPS_TOO_LONG = (
    f"keys should have at most {MAX_PROP_KEY_BYTES} bytes and values {MAX_PROP_VALUE_BYTES} bytes"
)


class PlausibleEvent(msgspec.Struct, kw_only=True):
    """The body of ``POST /api/event``: the short names trackers send, or the long ones."""

    n: str | int | None = None
    name: str | int | None = None
    u: str | None = None
    url: str | None = None
    d: str | None = None
    domain: str | None = None
    r: Any = None
    referrer: Any = None
    p: Any = None
    props: Any = None
    m: Any = None
    meta: Any = None
    h: int | bool | None = None
    hashMode: int | bool | None = None
    i: Any = None
    interactive: Any = None
    sd: Any = None
    e: Any = None
    w: Any = None
    v: Any = None
    revenue_: Any = msgspec.field(default=None, name="$")
    revenue: Any = None

    # -- Plausible's reading of each field (``request.ex``), shared by both sides --------

    def event_name(self) -> str:
        return str(next((v for v in (self.n, self.name) if v is not None), ""))

    def page_url(self) -> str:
        return (self.u if self.u is not None else self.url) or ""

    def domains(self) -> list[str]:
        """The sites the event counts for, as Plausible writes them (no ``www.``)."""
        raw = self.d if self.d is not None else self.domain
        if raw is None:
            try:
                host = urlsplit(self.page_url()).hostname
            except ValueError:  # "http://[..." : no host to take
                return []
            return [_site(host)] if host else []
        return [_site(part) for part in raw.strip().split(",") if _site(part)]

    def hash_mode(self) -> bool:
        value = self.h if self.h is not None else self.hashMode
        return value is True or (type(value) is int and value == 1)

    def referrer_url(self) -> str | None:
        value = self.r if self.r is not None else self.referrer
        return value[:MAX_URL_BYTES] if isinstance(value, str) and value else None

    def custom_props(self) -> dict[str, Any]:
        raw = next((v for v in (self.m, self.meta, self.p, self.props) if v is not None), None)
        kept = {k: v for k, v in _object(raw).items() if _is_prop(k, v)}
        return dict(list(kept.items())[:MAX_PROPS])

    def is_interactive(self) -> bool:
        value = self.i if self.i is not None else self.interactive
        return value is not False

    def scroll_depth(self) -> int | None:
        depth = _integer(self.sd)
        return None if depth is None or depth < 0 else min(depth, 100)

    def engaged_ms(self) -> int | None:
        engaged = _integer(self.e)
        return engaged if engaged is not None and 0 <= engaged < MAX_ENGAGEMENT_MS else None

    def revenue_amount(self) -> tuple[float, str] | None:
        raw = _object(self.revenue_ if self.revenue_ is not None else self.revenue)
        amount, currency = raw.get("amount"), raw.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            return None
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            return None
        try:
            value = Decimal(str(amount).strip())
        except InvalidOperation:
            return None
        return (float(value), currency.upper()) if value.is_finite() else None


def _object(raw: Any) -> dict[str, Any]:
    """An object, or an object in a JSON string (Plausible's ``decode_or_fallback``); else {}."""
    if isinstance(raw, str):
        try:
            raw = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _site(name: str | None) -> str:
    """A site as Plausible writes it: trimmed, without ``www.`` (case is the lookup's)."""
    return (name or "").strip().removeprefix("www.")


def _is_prop(key: Any, value: Any) -> bool:
    """Plausible keeps a property whose key and value are scalars and not blank."""
    if isinstance(value, list | dict) or value is None:
        return False
    return bool(str(key).lstrip()) and bool(_text(value).lstrip())


def _text(value: Any) -> str:
    """A property value as Plausible's ``to_string`` writes it (for the size rules)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 20 and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


# -- validation (collector side) --------------------------------------------------------


def validate(raw: bytes) -> PlausibleEvent:
    """The event, or :class:`InvalidInput` naming every field Plausible would refuse."""
    event = decode(raw, PlausibleEvent, what="event")
    errors: list[FieldError] = []
    name_field = "n" if event.n is not None else "name"
    name = event.event_name()
    if not name.strip():
        errors.append(FieldError(name_field, "can't be blank"))
    elif len(name) > MAX_NAME:
        errors.append(FieldError(name_field, f"should be at most {MAX_NAME} character(s)"))
    url_field = "u" if event.u is not None else "url"
    url = event.page_url()
    if not url:
        errors.append(FieldError(url_field, "is required"))
    elif len(url.encode()) > MAX_URL_BYTES:
        errors.append(
            FieldError(url_field, f"must be a valid url of {MAX_URL_BYTES} bytes or less")
        )
    elif _scheme(url) == "data":
        errors.append(FieldError(url_field, "scheme is not allowed"))
    if not event.domains():
        errors.append(FieldError("d" if event.domain is None else "domain", "can't be blank"))
    if name == "engagement" and event.scroll_depth() is None and event.engaged_ms() is None:
        errors.append(FieldError(name_field, ENGAGEMENT_NEEDS))
    if any(
        len(str(k).encode()) > MAX_PROP_KEY_BYTES or len(_text(v).encode()) > MAX_PROP_VALUE_BYTES
        for k, v in event.custom_props().items()
    ):
        errors.append(FieldError("p", PROPS_TOO_LONG))
    if errors:
        raise InvalidInput("invalid event", errors)
    return event


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:  # not a URL Python can split: no scheme to refuse
        return ""


# -- mapping to the canonical model (worker side, pure) --------------------------------


class Wrapped(msgspec.Struct):
    """An envelope's body: the visitor id the collector derived, and the event as sent."""

    visitor: str
    event: PlausibleEvent


def page_context(event: PlausibleEvent) -> dict[str, Any]:
    """``context.page`` in Segment's layout: url, path, search, referrer (and hash)."""
    url = event.page_url()
    try:
        parts = urlsplit(url)
    except ValueError:  # an unparseable URL is still the page's URL
        return {"url": url, "path": "/", "search": ""}
    path = parts.path or "/"
    if event.hash_mode() and parts.fragment:
        path += "#" + parts.fragment
    page: dict[str, Any] = {
        "url": url,
        "path": path,
        "search": f"?{parts.query}" if parts.query else "",
    }
    if parts.fragment:
        page["hash"] = "#" + parts.fragment
    referrer = event.referrer_url()
    if referrer is not None:
        page["referrer"] = referrer
    return page


def normalise(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, Wrapped)
    event = body.event
    name = event.event_name()
    properties = event.custom_props()
    if name == "pageview":
        kind, name = EventType.PAGE, "page_view"
    elif name == "engagement":
        kind = EventType.ENGAGEMENT
        engaged, depth = event.engaged_ms(), event.scroll_depth()
        properties |= {"engaged_ms": engaged} if engaged is not None else {}
        properties |= {"max_scroll_pct": depth} if depth is not None else {}
    else:
        kind = EventType.TRACK
    revenue = event.revenue_amount()
    if revenue is not None:
        properties |= {"revenue": revenue[0], "currency": revenue[1]}
    context = client_context(None, None, envelope.ip, envelope.user_agent)
    context["page"] = page_context(event)
    if isinstance(event.w, int) and not isinstance(event.w, bool) and event.w > 0:
        context["screen"] = {"width": event.w}
    if not event.is_interactive():
        context["interactive"] = False
    return Normalised(
        events=(
            new_event(
                envelope,
                name=name,
                type=kind,
                anonymous_id=body.visitor,
                properties=properties,
                context=context,
            ),
        )
    )


DIALECT = Dialect(NAME, "Plausible", normalise)
