"""Dropping the events of erased people (``sightline users forget``) before they are written.

Each product's suppression list (hashes of ids, ``sightline.store.erasure``) is cached
in the worker with its version. Inside every batch's write transaction the versions of
the batch's products are read (one small query, under a shared lock on PostgreSQL that an
erasure takes exclusively while it changes a list): a list whose version moved is loaded
again before anything is written, so an event accepted after an erasure is dropped even
if this worker's copy was stale, and so are the jobs that were already queued in Redis.
A cached list also expires after ``ttl`` seconds (memory of products no longer sending).

A message is dropped whole when any id it carries is suppressed: an event's user or
anonymous id, a user change's id or anonymous id, either side of an alias. So is a dead
letter of whose envelope a string (or a string of a body kept as JSON text) is a
suppressed id. Dropped events are counted (``WriteResult.suppressed``, the
``suppressed`` Redis counter).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from sightline.model import Normalised
from sightline.store.erasure import SuppressionList, load_suppression, lock_for_batch
from sightline.store.writer import DeadLetter

MEMO = 100_000
"""Verdicts (id -> suppressed?) remembered per list; cleared when the list changes."""


class _Cached(NamedTuple):
    suppression: SuppressionList | None
    loaded_at: float
    verdicts: dict[str, bool]


class _Verdicts:
    """A list's verdicts for one batch, remembered: ids come again and again (a person
    sends many events), and hashing each every time costs more than the lookup."""

    def __init__(self, product_id: str, suppression: SuppressionList, memo: dict[str, bool]):
        self.product_id = product_id
        self.suppression = suppression
        self.memo = memo

    def __call__(self, external_id: str) -> bool:
        verdict = self.memo.get(external_id)
        if verdict is None:
            verdict = self.suppression.suppresses(self.product_id, external_id)
            if len(self.memo) >= MEMO:
                self.memo.clear()
            self.memo[external_id] = verdict
        return verdict


def ids_of(item: Normalised) -> set[str]:
    """Every id a message names."""
    found: set[str] = set()
    for event in item.events:
        if event.user_id is not None:
            found.add(event.user_id)
        if event.anonymous_id is not None:
            found.add(event.anonymous_id)
    for user in item.users:
        found.add(user.external_id)
        if user.anonymous_id is not None:
            found.add(user.anonymous_id)
    for alias in item.aliases:
        found.add(alias.alias)
        found.add(alias.user_external_id)
    return found


class SuppressionCache:
    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._lists: dict[str, _Cached] = {}

    def current(self, conn: sa.Connection, product_ids: set[str]) -> dict[str, _Verdicts]:
        """The lists of ``product_ids`` as of this transaction (see the module doc)."""
        versions = lock_for_batch(conn, product_ids)
        now = time.monotonic()
        found: dict[str, _Verdicts] = {}
        for product_id in product_ids:
            version = versions.get(product_id)
            cached = self._lists.get(product_id)
            if version is None:  # no list: nothing suppressed
                self._lists.pop(product_id, None)
                continue
            if (
                cached is None
                or cached.suppression is None
                or cached.suppression.version != version
                or now - cached.loaded_at > self._ttl
            ):
                cached = _Cached(load_suppression(conn, product_id), now, {})
                self._lists[product_id] = cached
            if cached.suppression is not None and cached.suppression.hashes:
                found[product_id] = _Verdicts(product_id, cached.suppression, cached.verdicts)
        return found

    def filter(
        self, conn: sa.Connection, items: Sequence[Normalised], dead: Sequence[DeadLetter] = ()
    ) -> tuple[list[Normalised], list[DeadLetter], int]:
        """The messages and dead letters to write, and how many were dropped (events of
        the messages, plus one per dead letter naming a suppressed id)."""
        if not items and not dead:
            return [], [], 0
        products = {item.events[0].product_id for item in items}
        products.update(d.product_id for d in dead if d.product_id is not None)
        lists = self.current(conn, products)
        if not lists:
            return list(items), list(dead), 0
        kept: list[Normalised] = []
        dropped = 0
        for item in items:
            product_id = item.events[0].product_id
            suppressed = lists.get(product_id)
            if suppressed is not None and any(suppressed(i) for i in ids_of(item)):
                dropped += len(item.events)
                continue
            kept.append(item)
        letters: list[DeadLetter] = []
        for letter in dead:
            owner = letter.product_id or ""
            suppressed = lists.get(owner)
            if suppressed is not None and any(
                suppressed.suppression.suppresses(owner, text)
                for text in strings_of(letter.envelope)
            ):
                dropped += 1
                continue
            letters.append(letter)
        return kept, letters, dropped


def strings_of(value: Any, depth: int = 0) -> Iterator[str]:
    """The short strings of a dead letter's envelope (ids are at most 255 characters),
    looking into a body kept as JSON text."""
    if depth > 64:
        return
    if isinstance(value, str):
        if len(value) <= 255:
            yield value
        elif value[:1] in ("{", "[") and depth < 8:
            try:
                inner = msgspec.json.decode(value)
            except msgspec.DecodeError:
                return
            yield from strings_of(inner, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_of(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item, depth + 1)
