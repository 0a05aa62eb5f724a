"""Privacy at the edge: a product's IP handling applied before anything is enqueued.

For a product whose IP handling is ``truncated`` or ``none`` the whole client address
never reaches Redis (its jobs, its append-only file), the worker, its logs or the dead
letters: :func:`protect` runs in ``collector.intake.accept`` before the envelopes are
built and

- looks the whole address up in GeoIP here, in memory, and puts the country, region and
  city (``sightline.geo.COARSE_FIELDS``; ``{}`` when nowhere is known, or GeoIP is off)
  in ``Envelope.geo``, so the worker does not look the truncated address up again;
- keeps ``Envelope.ip`` as the product allows (truncated, or absent);
- rewrites the body (``sightline.ipaddr.scrub_body``): the string value of every member
  named ``ip``, ``cip`` or ``ip_override`` at any depth, and every string value equal to
  the peer's address, wherever it is.

A product with ``full`` IP handling is left to the worker (no lookup here, no body read
again): the hot path costs nothing more for it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from sightline.geo import GeoLocator, coarse, open_locator
from sightline.ipaddr import anonymise, scrub_body
from sightline.model import IpHandling
from sightline.settings import Settings

CACHE_SIZE = 8192


class EdgeLocator:
    """The collector's GeoIP reader (``GEOIP_DB``; ``off``: none), with a bounded cache of
    coarse locations by address. One per collector process, opened in the lifespan."""

    def __init__(self, locator: GeoLocator | None) -> None:
        self.locator = locator
        self.locate = functools.lru_cache(maxsize=CACHE_SIZE)(self._locate)
        self.kept = functools.lru_cache(maxsize=CACHE_SIZE)(anonymise)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLocator:
        # Cached here, on the coarse dict: no second cache in the reader.
        return cls(open_locator(settings, cache_size=0))

    def _locate(self, ip: str) -> dict[str, str]:
        if self.locator is None:
            return {}
        return coarse(self.locator.lookup(ip))

    def close(self) -> None:
        self.locate.cache_clear()
        if self.locator is not None:
            self.locator.close()


_FULL = IpHandling.FULL
"""Read as a global (an enum member is ~0.05 µs a read on Python 3.11)."""


class Protected(NamedTuple):
    """One payload as it may be enqueued: its body, the kept address and the location."""

    body: msgspec.Raw
    ip: str | None
    geo: dict[str, str] | None


def protect(
    edge: EdgeLocator,
    policy: IpHandling,
    peer: str | None,
    ip: str | None,
    bodies: Sequence[msgspec.Raw],
) -> list[Protected]:
    """``bodies`` with the product's IP handling applied (see the module doc).

    ``peer``: the HTTP peer's address (copies of it are rewritten wherever they are);
    ``ip``: the address the envelope would carry (the peer's, unless the endpoint gave
    another, or ``None`` when the client asked not to be kept).
    """
    if policy is _FULL:
        return [Protected(body, ip, None) for body in bodies]
    kept = edge.kept(ip, policy) if ip is not None else None
    result = []
    for body in bodies:
        original = bytes(body)
        raw, carried = scrub_body(original, peer, policy)
        whole = carried or ip  # the dialects take a body's own address before the peer's
        geo = edge.locate(whole) if whole is not None else {}
        result.append(Protected(body if raw is original else msgspec.Raw(raw), kept, geo))
    return result
