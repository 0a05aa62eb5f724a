"""Prometheus metrics of one collector app (its own registry: no process globals).

``GET /metrics`` is not for whoever reaches the port (the port is public: pages send
to it). It answers a request with ``Authorization: Bearer SIGHTLINE_METRICS_TOKEN``
(what a Prometheus scrape config's ``authorization`` sends), and, unless
``SIGHTLINE_METRICS_LOOPBACK=token``, a scrape straight from a loopback address. A
request that a proxy relayed (it carries ``X-Forwarded-For``, ``Forwarded`` or
``X-Real-IP``) is never a loopback scrape, even when the proxy runs on the same host.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Tally(Collector):
    """A counter family counted in a plain dict and read by each scrape.

    For the counts every request makes (its answer, its envelopes): a prometheus-client
    ``Counter`` child takes a lock per increment (~0.6 µs); the event loop alone counts
    these, so a dict update is enough (~0.1 µs). A scrape (``generate_latest``) reads the
    values as they are: exported as a ``Counter`` would be (``_total`` and ``_created``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.counts: dict[tuple[str, ...], float] = {}
        self._created: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def add(self, labels: tuple[str, ...], amount: float) -> None:
        value = self.counts.get(labels)
        if value is None:
            self._created[labels] = time.time()
            self.counts[labels] = float(amount)
        else:
            self.counts[labels] = value + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.counts.items()):
            family.add_metric(list(labels), value, created=self._created[labels])
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Tally(
            "sightline_requests",
            "HTTP requests answered, by dialect and status code",
            ("dialect", "status"),
            self.registry,
        )
        self.events_enqueued = Tally(
            "sightline_events_enqueued",
            "Envelopes acknowledged (by Redis, or by the spool while Redis is away)",
            ("dialect",),
            self.registry,
        )
        self.flush_size = Histogram(
            "sightline_flush_batch_size",
            "Envelopes per group-commit flush (one RQ job each)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "sightline_events_rejected",
            "Payloads refused without an error status (the pixel always answers an image)",
            ["dialect", "reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "sightline_rate_limited",
            "Requests answered 429 by a product's rate limit, by dialect and scope (key, ip)",
            ["dialect", "scope"],
            registry=self.registry,
        )
        self.flush_failures = Counter(
            "sightline_flush_failures",
            "Group-commit flushes answered 503 (neither Redis nor the spool took them)",
            registry=self.registry,
        )
        self.spooled = Counter(
            "sightline_spool_events_spooled",
            "Envelopes written to the spool file while Redis was away (SIGHTLINE_SPOOL)",
            registry=self.registry,
        )
        self.drained = Counter(
            "sightline_spool_events_drained",
            "Spooled envelopes sent to Redis once it answered again",
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "sightline_spool_bytes",
            "Spooled bytes Redis has not acknowledged yet (this process's file and an orphan "
            "it is draining)",
            registry=self.registry,
        )

    def count_request(self, dialect: str, status: int) -> None:
        """On the event loop only (``Tally``), as every count of an answer is."""
        self.requests.add((dialect, str(status)), 1)

    def count_enqueued(self, dialect: str, events: int) -> None:
        """On the event loop only (``Tally``)."""
        self.events_enqueued.add((dialect,), events)

    def count_rate_limited(self, dialect: str, scope: str) -> None:
        self.rate_limited.labels(dialect=dialect, scope=scope).inc()

    def count_rejected(self, dialect: str, reason: str) -> None:
        self.rejected.labels(dialect=dialect, reason=reason).inc()

    def count_spooled(self, events: int) -> None:
        self.spooled.inc(events)

    def count_drained(self, events: int) -> None:
        self.drained.inc(events)

    def set_spool_bytes(self, pending: int) -> None:
        self.spool_bytes.set(pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts every response by the dialect of its route (route names are ``dialect.endpoint``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "name", None) or "unmatched"
            dialect = name.split(".", 1)[0]
            self.metrics.count_request(dialect, status)


FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def is_loopback_scrape(request: Request) -> bool:
    """The request came straight from this host: a loopback peer, relayed by nobody."""
    client = request.client
    if client is None or any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _token_matches(request: Request, token: str) -> bool:
    given = _bearer(request)
    # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 401).
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


async def metrics_endpoint(request: Request) -> Response:
    settings = request.state.settings
    token: str | None = settings.metrics_token
    allowed = (token is not None and _token_matches(request, token)) or (
        settings.metrics_loopback == "open" and is_loopback_scrape(request)
    )
    if not allowed and token is not None:
        raise HTTPException(
            401,
            "GET /metrics needs Authorization: Bearer <SIGHTLINE_METRICS_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if not allowed:
        raise HTTPException(
            403,
            "GET /metrics answers loopback scrapes only: set SIGHTLINE_METRICS_TOKEN "
            "to scrape it from elsewhere",
        )
    metrics: Metrics = request.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
