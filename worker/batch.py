"""``process_batch``'s body: envelopes -> canonical records -> one transaction.

Each envelope is prepared on its own (decode, normalise, enrich): one bad
envelope becomes a dead letter with its reason and the rest of the batch is
stored. Database errors are not caught: the job fails and RQ retries it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from collector.dialects import UnknownDialect, resolve_normaliser
from collector.envelope import ENVELOPE_VERSION, Envelope, envelope_from_job
from sightline.model import Normalised
from sightline.store.products import Product, list_products
from sightline.store.writer import DeadLetter, WriteResult, write_batch
from worker.deadletter import Reason, Rejected

log = logging.getLogger(__name__)

Enricher = Callable[[Normalised, Product, Envelope], Normalised]


class ProductCache:
    """Product settings for the worker, reloaded at most every ``ttl`` seconds."""

    def __init__(self, engine: sa.Engine, ttl: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._products: dict[str, Product] = {}
        self._loaded_at = float("-inf")

    def get(self, product_id: str) -> Product | None:
        age = time.monotonic() - self._loaded_at
        # A product we do not know may be new: look again, but not more than once a second.
        if age > self._ttl or (product_id not in self._products and age > 1.0):
            with self._engine.connect() as conn:
                self._products = {p.id: p for p in list_products(conn)}
            self._loaded_at = time.monotonic()
        return self._products.get(product_id)


class BatchProcessor:
    def __init__(self, engine: sa.Engine, enrich: Enricher) -> None:
        self.engine = engine
        self.products = ProductCache(engine)
        self._enrich = enrich

    def process(self, envelopes: Sequence[Any]) -> WriteResult:
        items: list[Normalised] = []
        dead: list[DeadLetter] = []
        for data in envelopes:
            try:
                items.append(self.prepare(data))
            except Rejected as rejection:
                product_id = data.get("product_id") if isinstance(data, dict) else None
                dead.append(
                    DeadLetter(
                        reason=rejection.reason.value,
                        detail=rejection.detail,
                        envelope=data,
                        product_id=product_id if isinstance(product_id, str) else None,
                    )
                )
        with self.engine.begin() as conn:
            return write_batch(conn, items, dead)

    def prepare(self, data: Any) -> Normalised:
        """One envelope to its enriched canonical records, or :class:`Rejected`."""
        if isinstance(data, dict) and data.get("v", ENVELOPE_VERSION) != ENVELOPE_VERSION:
            raise Rejected(
                Reason.ENVELOPE_VERSION,
                f"envelope version {data.get('v')!r}; this worker reads {ENVELOPE_VERSION}",
            )
        try:
            envelope = envelope_from_job(data)
        except (msgspec.ValidationError, TypeError) as exc:
            raise Rejected(Reason.ENVELOPE, str(exc)) from None
        try:
            normalise = resolve_normaliser(envelope.dialect)
        except UnknownDialect as exc:
            raise Rejected(Reason.UNKNOWN_DIALECT, str(exc)) from None
        try:
            normalised = normalise(envelope)
        except (msgspec.ValidationError, KeyError, ValueError, TypeError) as exc:
            raise Rejected(Reason.SCHEMA, f"{type(exc).__name__}: {exc}") from None
        product = self.products.get(envelope.product_id)
        if product is None:
            raise Rejected(Reason.UNKNOWN_PRODUCT, f"no product {envelope.product_id!r}")
        try:
            return self._enrich(normalised, product, envelope)
        except Rejected:
            raise
        except (ValueError, TypeError, KeyError, LookupError) as exc:
            raise Rejected(Reason.ENRICHMENT, f"{type(exc).__name__}: {exc}") from None
