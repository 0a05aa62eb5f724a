"""``process_batch``'s body: envelopes -> canonical records (``prepare_batch``) -> one
transaction (``store``).

Each envelope is prepared on its own (decode, normalise, enrich): one bad
envelope becomes a dead letter with its reason and the rest of the batch is
stored. A worker must not crash, nor retry a batch forever, because of what one
client sent, so:

- anything a dialect or the enrichment raises becomes a dead letter (an unexpected
  exception too: ``internal``, replayable once the bug is fixed);
- values the store would refuse are found before writing (``size``) and, if the
  database still refuses the batch (``DataError``; an account made its own
  ancestor), the batch is split in halves until the message at fault is alone,
  and that one becomes a dead letter while the rest is stored.

Infrastructure errors (database or Redis unreachable) are not caught: the job
fails and RQ retries it with backoff. Dead letters keep only what the product's
IP handling allows of any address in the envelope.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from sightline.dialects import UnknownDialect, resolve
from sightline.envelope import ENVELOPE_VERSION, Envelope, envelope_from_job
from sightline.ipaddr import anonymise_addresses
from sightline.model import BotHandling, Event, IpHandling, Normalised, authority_of
from sightline.store.db import WriterTurns, read_connection
from sightline.store.effects import IdentityError
from sightline.store.products import Product, list_products
from sightline.store.schema import events
from sightline.store.writer import (
    DeadLetter,
    EventRows,
    WriteResult,
    write_batch,
    write_dead_letters,
)
from worker.deadletter import Reason, Rejected
from worker.suppression import SuppressionCache

log = logging.getLogger(__name__)

Enricher = Callable[[Normalised, Product, Envelope], Normalised]

# Event fields a client fills, with the longest value the store keeps.
_LIMITS = {
    column.name: column.type.length
    for column in events.c
    if isinstance(column.type, sa.String)
    and column.type.length
    and column.name not in ("id", "product_id", "type", "dialect")
}
_limited_values = operator.attrgetter(*_LIMITS)
_SHORTEST_LIMIT = min(_LIMITS.values())
# What the database refuses because of the values themselves, not its availability.
_DATA_ERRORS = (sa.exc.DataError, IdentityError)
# When a dead letter's envelope itself cannot be stored (NUL in PostgreSQL JSON).
_UNSTORABLE_LIMIT = 64 * 1024


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
            # A snapshot read: on SQLite a plain connection begins IMMEDIATE, and waited
            # (the prepare step with it) for the write lock another batch held.
            with read_connection(self._engine) as conn:
                self._products = {p.id: p for p in list_products(conn)}
            self._loaded_at = time.monotonic()
        return self._products.get(product_id)


class _Item(NamedTuple):
    normalised: Normalised
    source: Any  # the envelope as the job carried it, for a dead letter
    is_sanitised: bool = False


class Prepared(NamedTuple):
    """A batch's envelopes prepared for the store (:meth:`BatchProcessor.prepare_batch`)."""

    items: list[_Item]
    dead: list[DeadLetter]
    bots_dropped: int
    envelopes: int
    """How many envelopes the batch had (its jobs' ``args``)."""
    rows: EventRows
    """The items' event rows, made before the transaction (``sightline.store.writer``)."""


def _without_nul(item: _Item) -> _Item:
    text = msgspec.json.encode(item.normalised).replace(b"\\u0000", b"\\ufffd")
    return _Item(msgspec.json.decode(text, type=Normalised), item.source, is_sanitised=True)


class BatchProcessor:
    def __init__(self, engine: sa.Engine, enrich: Enricher) -> None:
        self.engine = engine
        self._turns = WriterTurns.for_engine(engine)
        self.products = ProductCache(engine)
        self.suppression = SuppressionCache()
        self._enrich = enrich

    def process(self, envelopes: Sequence[Any]) -> WriteResult:
        """Prepare and store ``envelopes``: :meth:`prepare_batch`, then :meth:`store`."""
        return self.store(self.prepare_batch(envelopes))

    def prepare_batch(self, envelopes: Sequence[Any]) -> Prepared:
        """Every envelope to its enriched canonical records or a dead letter, with no
        transaction open (the products are read through their cache): what a worker may
        do for the next batch while the last one is being written (``worker.rqworker``)."""
        items: list[_Item] = []
        dead: list[DeadLetter] = []
        bots_dropped = 0
        for data in envelopes:
            try:
                normalised, product = self._prepare(data)
            except Rejected as rejection:
                dead.append(self.dead_letter(data, rejection.reason, rejection.detail))
                continue
            if product.bot_handling is BotHandling.DROP:
                kept = tuple(e for e in normalised.events if not e.is_bot)
                if len(kept) < len(normalised.events):
                    bots_dropped += len(normalised.events) - len(kept)
                    if not kept:
                        continue
                    normalised = msgspec.structs.replace(normalised, events=kept)
            items.append(_Item(normalised, data))
        made = EventRows((item.normalised for item in items), dialect=self.engine.dialect.name)
        return Prepared(items, dead, bots_dropped, len(envelopes), made)

    def store(self, prepared: Prepared) -> WriteResult:
        """A prepared batch in one transaction; what the database refuses of it isolated
        and dead-lettered (see the module's doc)."""
        items, dead, made = prepared.items, prepared.dead, prepared.rows
        try:
            result = self._write(items, dead, made)
        except _DATA_ERRORS as exc:
            log.warning("the store refused a batch (%s): isolating the message at fault", exc)
            result = self._write_isolating(items, dead, made)
        result.bots_dropped = prepared.bots_dropped
        return result

    def prepare(self, data: Any) -> Normalised:
        """One envelope to its enriched canonical records, or :class:`Rejected`."""
        return self._prepare(data)[0]

    def _prepare(self, data: Any) -> tuple[Normalised, Product]:
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
            normalise = resolve(envelope.dialect).normalise
        except UnknownDialect as exc:
            raise Rejected(Reason.UNKNOWN_DIALECT, str(exc)) from None
        try:
            normalised = normalise(envelope)
        except (msgspec.ValidationError, KeyError, ValueError, TypeError) as exc:
            raise Rejected(Reason.SCHEMA, f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # a dialect's bug must not stop the batch: see module doc
            log.exception("dialect %s failed on envelope %s", envelope.dialect, envelope.id)
            raise Rejected(Reason.INTERNAL, f"{type(exc).__name__}: {exc}") from None
        if not normalised.events:
            raise Rejected(Reason.SCHEMA, "the message maps to no event")
        for event in normalised.events:
            _check_sizes(event)
        # Not guarded: a database error here is an outage, and the job must be retried.
        product = self.products.get(envelope.product_id)
        if product is None:
            raise Rejected(Reason.UNKNOWN_PRODUCT, f"no product {envelope.product_id!r}")
        enabled = envelope.product_enabled
        if enabled is not None and enabled is not product.is_enabled:
            # The switch as it was when the event was accepted, not as this cache has it.
            product = msgspec.structs.replace(product, is_enabled=enabled)
        # What the message may change of users and accounts: sightline.store.effects.
        by = authority_of(envelope.key, product.client_identity)
        if by is not normalised.authority:
            normalised = msgspec.structs.replace(normalised, authority=by)
        try:
            return self._enrich(normalised, product, envelope), product
        except Rejected:
            raise
        except (ValueError, TypeError, KeyError, LookupError, OverflowError) as exc:
            raise Rejected(Reason.ENRICHMENT, f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # see module doc
            log.exception("enrichment failed on envelope %s", envelope.id)
            raise Rejected(Reason.INTERNAL, f"{type(exc).__name__}: {exc}") from None

    def dead_letter(self, data: Any, reason: Reason, detail: str) -> DeadLetter:
        """A dead letter for ``data`` keeping only what its product allows of addresses.

        When the product is not known, the addresses are truncated: we cannot ask
        what it allows, and a dead letter should not keep more than the strictest
        common policy needs to be replayed usefully.
        """
        product_id = data.get("product_id") if isinstance(data, dict) else None
        if not isinstance(product_id, str):
            product_id = None
        product = self.products.get(product_id) if product_id is not None else None
        policy = product.ip_handling if product is not None else IpHandling.TRUNCATED
        envelope = anonymise_addresses(data, policy) if policy is not IpHandling.FULL else data
        return DeadLetter(
            reason=reason.value, detail=detail, envelope=envelope, product_id=product_id
        )

    def _write(
        self, items: Sequence[_Item], dead: Sequence[DeadLetter], made: EventRows
    ) -> WriteResult:
        # SQLite: this worker's turn at the write lock first (sightline.store.db).
        with self._turns.turn() if self._turns else nullcontext(), self.engine.begin() as conn:
            # Erased people's messages go here, in the write transaction: worker.suppression.
            kept, letters, suppressed = self.suppression.filter(
                conn, [item.normalised for item in items], dead
            )
            result = write_batch(conn, kept, letters, made)
            result.suppressed = suppressed
            return result

    def _write_isolating(
        self, items: list[_Item], dead: list[DeadLetter], made: EventRows
    ) -> WriteResult:
        """Store what the database accepts, halving until each refused message is alone."""
        result = WriteResult()
        refused: list[DeadLetter] = []
        pending = [items] if items else []
        while pending:
            part = pending.pop()
            try:
                result.add(self._write(part, (), made))
            except _DATA_ERRORS as exc:
                if len(part) > 1:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
                    continue
                if not part[0].is_sanitised:
                    # PostgreSQL holds no NUL in text or JSON: store U+FFFD in its place.
                    pending.append([_without_nul(part[0])])
                    continue
                reason = Reason.IDENTITY if isinstance(exc, IdentityError) else Reason.STORE
                detail = str(getattr(exc, "orig", None) or exc)
                refused.append(self.dead_letter(part[0].source, reason, detail[:2000]))
        with self.engine.begin() as conn:  # an erased person's dead letters: worker.suppression
            _, letters, suppressed = self.suppression.filter(conn, (), [*dead, *refused])
        for letter in letters:
            self._store_dead_letter(letter)
        result.dead_letters += len(letters)
        result.suppressed += suppressed
        return result

    def _store_dead_letter(self, letter: DeadLetter) -> None:
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                write_dead_letters(conn, [letter], now)
            return
        except sa.exc.DataError:
            pass
        # PostgreSQL's JSON holds no NUL character: keep the envelope with U+FFFD instead,
        # which still replays; failing that, its text.
        text = msgspec.json.encode(letter.envelope).replace(b"\\u0000", b"\\ufffd")
        for envelope in (
            msgspec.json.decode(text),
            {"unstorable": text[:_UNSTORABLE_LIMIT].decode(errors="replace")},
        ):
            try:
                with self.engine.begin() as conn:
                    write_dead_letters(
                        conn, [msgspec.structs.replace(letter, envelope=envelope)], now
                    )
                return
            except sa.exc.DataError:
                continue


def _check_sizes(event: Event) -> None:
    values: tuple[str | None, ...] = _limited_values(event)
    if max(map(len, filter(None, values)), default=0) <= _SHORTEST_LIMIT:  # (in C)
        return
    for (name, limit), value in zip(_LIMITS.items(), values, strict=True):
        if value is not None and len(value) > limit:
            raise Rejected(Reason.SIZE, f"{name} is {len(value)} characters; at most {limit}")
