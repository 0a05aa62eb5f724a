"""The last step of every ingest endpoint: wrap validated payloads and group-commit them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from starlette.requests import Request

from collector.debug import DebugAnswer, is_debug
from collector.groupcommit import GroupCommitter
from collector.metrics import Metrics
from collector.privacy import EdgeLocator, protect
from collector.ratelimit import SharedLimits, TokenBuckets
from sightline.dialects.fields import is_ip_address
from sightline.envelope import MAX_USER_AGENT, Envelope
from sightline.errors import TooManyRequests
from sightline.ids import uuid7
from sightline.model import IpHandling, KeyKind
from sightline.store.products import Product


async def _check_rate(
    request: Request, product: Product, dialect: str, peer: str, cost: int
) -> None:
    """429 when the product's limits (events per second) would be exceeded."""
    limits = [
        (scope, who, rate)
        for scope, who, rate in (
            ("key", "", product.rate_per_key),
            ("ip", peer, product.rate_per_ip),
        )
        if rate
    ]
    shared: SharedLimits | None = request.state.shared_limits
    if shared is not None:
        refused, wait = await shared.take(product.id, limits, cost)
        if refused:
            _refuse(request, dialect, *limits[refused - 1], wait)
        return
    buckets: TokenBuckets = request.state.rate_limits
    for scope, who, rate in limits:
        wait = buckets.take((product.id, who), rate, cost)
        if wait:
            _refuse(request, dialect, scope, who, rate, wait)


def _refuse(request: Request, dialect: str, scope: str, who: str, rate: float, wait: float) -> None:
    request.state.metrics.count_rate_limited(dialect, scope)
    raise TooManyRequests(f"over the product's limit of {rate:g} events/s per {scope}", wait)


@functools.lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    return is_ip_address(text)


class Payload(msgspec.Struct, frozen=True):
    kind: str
    body: msgspec.Raw


async def accept(
    request: Request,
    *,
    dialect: str,
    product_id: str,
    key: KeyKind,
    payloads: Sequence[Payload],
    sent_at: datetime | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    anonymous: bool = False,
) -> list[Envelope]:
    """Enqueue one envelope per payload; returns once Redis acknowledged them.

    ``key``: the kind of key that authorised the payloads (``Envelope.key``: what the
    worker lets them change). ``anonymous``: the client asked that its address not be
    kept (Snowplow's ``SP-Anonymous``): the envelopes carry none, so no stage after this
    one sees it.
    """
    received_at = datetime.now(UTC)
    client = request.client
    host = client.host if client else None
    # uvicorn takes a trusted proxy's X-Forwarded-For as it comes: keep only an address.
    address = host if host is not None and _is_address(host) else None
    peer = None if anonymous else address
    state = request.state
    # The enabled flag is decided here, as the key table knows it (reloaded by the call that
    # switched it), not by the worker's cache later: see ``Envelope.product_enabled``.
    product = state.directory.product(product_id)
    enabled = product.is_enabled if product is not None else None
    if product is not None and (product.rate_per_key or product.rate_per_ip):
        await _check_rate(request, product, dialect, host or "-", len(payloads))
    headers = request.headers
    if user_agent is None:
        user_agent = headers.get("user-agent")
    if user_agent is not None:
        user_agent = user_agent[:MAX_USER_AGENT]
    origin = headers.get("origin")
    # The product's IP handling, before anything is enqueued (``collector.privacy``).
    edge: EdgeLocator = state.edge_locator
    protected = protect(
        edge,
        product.ip_handling if product is not None else IpHandling.TRUNCATED,
        address,
        ip if ip is not None else peer,
        [payload.body for payload in payloads],
    )
    envelopes = [
        Envelope(
            id=uuid7(),
            dialect=dialect,
            kind=payload.kind,
            product_id=product_id,
            received_at=received_at,
            ip=kept.ip,
            geo=kept.geo,
            user_agent=user_agent,
            origin=origin,
            sent_at=sent_at,
            product_enabled=enabled,
            key=key,
            body=kept.body,
        )
        for payload, kept in zip(payloads, protected, strict=True)
    ]
    if is_debug(request):
        raise DebugAnswer(envelopes)
    committer: GroupCommitter = state.committer
    await committer.submission(envelopes)
    metrics: Metrics = state.metrics
    metrics.count_enqueued(dialect, len(envelopes))
    return envelopes
