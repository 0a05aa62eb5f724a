"""Enrichment of normalised records, shared by every dialect.

Applied per envelope after its dialect mapped it, in this order:

1. times: UTC, clock-skew correction from ``sent_at`` (``context["clock"]``);
2. GeoIP on the client address (``context["geo"]``), or the location the collector
   found (``Envelope.geo``, for a product that does not keep full addresses: the address
   that reaches the worker is no longer whole, and is not looked up again); then the
   product's IP handling applied to ``context.ip`` and to every other copy of the
   address in the context, so only what the product allows is stored;
3. user agent (``context["ua"]``) and the bot flag (``Event.is_bot``);
4. campaign, click ids, referrer and channel from ``context.page`` (``context["campaign"]``);
5. the product's enabled flag (``is_unused``).

Dropping bots is the batch's decision (``worker.batch``), not this module's: a dropped
event is counted there.

Everything per distinct input is cached (user agent by string, location and kept
address by address, campaign by page URL + referrer), bounded, on the ``Enricher``
that each worker process builds once. Cached results are shared between events: treat
the dicts put into a context as read-only.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from sightline.envelope import MAX_USER_AGENT, Envelope
from sightline.geo import GeoLocator, open_locator
from sightline.ipaddr import anonymise, replace_addresses
from sightline.model import Event, IpHandling, Normalised
from sightline.settings import Settings
from sightline.store.products import Product
from worker.enrich.campaign import parse_campaign
from worker.enrich.clock import correct_timestamp
from worker.enrich.useragent import UserAgentParser

log = logging.getLogger(__name__)

MAX_ADDRESS_LENGTH = 64  # the longest textual IPv6 address with a zone fits easily
MAX_CACHED_PAGE = 1024  # longer URL + referrer pairs are parsed, not cached
CACHE_SIZE = 8192


def utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (as Segment does); aware ones converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def page_location(context: dict[str, Any]) -> tuple[str | None, str | None]:
    """The page URL and referrer of an event: ``context.page.url`` / ``.referrer``.

    The one place that knows where a canonical context keeps them (Segment's
    layout, which every dialect maps to).
    """
    page = context.get("page")
    if not isinstance(page, dict):
        return None, None
    url, referrer = page.get("url"), page.get("referrer")
    return (
        url if isinstance(url, str) and url else None,
        referrer if isinstance(referrer, str) and referrer else None,
    )


def _without_none(struct: msgspec.Struct) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(struct).items() if v is not None}


def load_geo(settings: Settings) -> GeoLocator | None:
    """The worker's GeoIP reader: ``GEOIP_DB`` (``off`` for none) or the shipped database."""
    return open_locator(settings, cache_size=CACHE_SIZE)


class Enricher:
    """Enriches one envelope's records; build one per worker process and reuse it.

    The caches live here, on the final values (the dicts stored in a context), so the
    parser and the locator it is given need none of their own (``cache_size=0``).
    """

    def __init__(
        self,
        user_agents: UserAgentParser | None = None,
        geo: GeoLocator | None = None,
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        """``geo=None``: no geolocation (:meth:`from_settings` opens the configured one)."""
        self.user_agents = user_agents if user_agents is not None else UserAgentParser(0)
        self.geo = geo
        self._ua = functools.lru_cache(maxsize=cache_size)(self._parse_agent)
        self._location = functools.lru_cache(maxsize=cache_size)(self._locate)
        self._kept = functools.lru_cache(maxsize=cache_size)(anonymise)
        self._campaign = functools.lru_cache(maxsize=cache_size)(self._parse_campaign)

    @classmethod
    def from_settings(cls, settings: Settings) -> Enricher:
        return cls(UserAgentParser(0), load_geo(settings))

    def close(self) -> None:
        if self.geo is not None:
            self.geo.close()

    def __call__(self, normalised: Normalised, product: Product, envelope: Envelope) -> Normalised:
        events, ip, geo = normalised.events, envelope.ip, envelope.geo
        if len(events) == 1:  # most messages: no generator to run
            enriched: tuple[Event, ...] = (self.enrich_event(events[0], product, ip, geo),)
        else:
            enriched = tuple([self.enrich_event(e, product, ip, geo) for e in events])
        return msgspec.structs.replace(normalised, events=enriched)

    def enrich_event(
        self,
        event: Event,
        product: Product,
        peer_ip: str | None = None,
        geo: dict[str, Any] | None = None,
    ) -> Event:
        """``event`` enriched: a new event, the given one is left as it was.

        ``geo``: the location the collector found from the whole address (``Envelope.geo``)
        for a product that does not keep it; the address the event carries is then no
        longer whole, and is not looked up again.
        """
        context = dict(event.context)
        received = utc(event.received_at)
        sent = utc(event.sent_at) if event.sent_at is not None else None
        timestamp, original = self._correct_time(event, context, received, sent)
        context = self._apply_address(context, product.ip_handling, peer_ip, geo)
        is_bot = event.is_bot
        agent = context.get("userAgent")
        if isinstance(agent, str) and len(agent) > MAX_USER_AGENT:
            agent = context["userAgent"] = agent[:MAX_USER_AGENT]
        if isinstance(agent, str):
            ua, is_bot = self._ua(agent[: self.user_agents.max_length])
            if ua is not None:
                context["ua"] = ua
        url, referrer = page_location(context)
        if url is not None or referrer is not None:
            campaign = self._campaign_of(url, referrer)
            sent_campaign = context.get("campaign")
            # A Segment client may send context.campaign itself: keep what the URL lacks.
            context["campaign"] = (
                {**sent_campaign, **campaign} if isinstance(sent_campaign, dict) else campaign
            )
        return msgspec.structs.replace(
            event,
            timestamp=timestamp,
            original_timestamp=original,
            received_at=received,
            sent_at=sent,
            context=context,
            is_bot=is_bot,
            is_unused=not product.is_enabled,
        )

    def _correct_time(
        self, event: Event, context: dict[str, Any], received: datetime, sent: datetime | None
    ) -> tuple[datetime, datetime | None]:
        """The corrected timestamp and the client's own time, in UTC; notes the clock."""
        original = event.original_timestamp
        if original is not None:
            original = utc(original)
            timestamp, clamped = correct_timestamp(received, sent, original)
        else:
            # No client time: the dialect dated the event itself; only the clamp applies.
            timestamp, clamped = correct_timestamp(received, None, utc(event.timestamp))
        if sent is not None or clamped:
            clock: dict[str, Any] = {"clamped": clamped}
            if sent is not None:
                # The client's clock minus ours (plus the request's transit time).
                clock["skew_ms"] = round((sent - received).total_seconds() * 1000)
            context["clock"] = clock
        return timestamp, original

    def _apply_address(
        self,
        context: dict[str, Any],
        policy: IpHandling,
        peer_ip: str | None,
        geo: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ip = context.get("ip")
        if not isinstance(ip, str) or len(ip) > MAX_ADDRESS_LENGTH:
            ip = None
        if geo is not None:  # located by the collector (empty: nowhere known)
            if geo:
                context["geo"] = geo
        elif ip is not None and self.geo is not None:
            # Located from the whole address in memory; only the kept form is stored.
            location = self._location(ip)
            if location is not None:
                context["geo"] = location
        if policy is not IpHandling.FULL:
            copies = {
                raw: self._kept(raw, policy)
                for raw in (ip, peer_ip)
                if raw is not None and len(raw) <= MAX_ADDRESS_LENGTH
            }
            if copies:
                context = replace_addresses(context, copies)
        if policy is IpHandling.FULL:
            kept = ip  # as the client or the collector gave it
        else:
            kept = self._kept(ip, policy) if ip is not None else None
        if kept is not None or "ip" in context:
            context["ip"] = kept
        return context

    def _campaign_of(self, url: str | None, referrer: str | None) -> dict[str, Any]:
        if len(url or "") + len(referrer or "") > MAX_CACHED_PAGE:
            return self._parse_campaign(url, referrer)
        result: dict[str, Any] = self._campaign(url, referrer)
        return result

    def _parse_agent(self, agent: str) -> tuple[dict[str, Any] | None, bool]:
        info = self.user_agents.parse(agent)
        if info is None:
            return None, False
        return _without_none(info), info.is_bot

    def _locate(self, ip: str) -> dict[str, Any] | None:
        assert self.geo is not None
        info = self.geo.lookup(ip)
        return _without_none(info) if info is not None else None

    @staticmethod
    def _parse_campaign(url: str | None, referrer: str | None) -> dict[str, Any]:
        info = parse_campaign(url, referrer)
        campaign: dict[str, Any] = {
            # Segment's names for the UTM values, so a client's context.campaign merges.
            "source": info.utm_source,
            "medium": info.utm_medium,
            "name": info.utm_campaign,
            "term": info.utm_term,
            "content": info.utm_content,
            "click_ids": info.click_ids or None,
            "referrer_host": info.referrer_host,
            "referrer_name": info.referrer_name,
            "search_term": info.search_term,
            "channel": info.channel,
        }
        return {k: v for k, v in campaign.items() if v is not None}
