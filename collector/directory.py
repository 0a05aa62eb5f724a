"""The collector's in-process view of products and keys.

Requests never query the database: keys are looked up in a table loaded at
start-up and refreshed in the background. An unknown key triggers one coalesced
reload, at most one per ``miss_interval``: a product created a moment ago works
on its first request, while a flood of bad keys costs one query a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec

from sightline.model import KeyKind as KeyKind  # where the endpoints import it from
from sightline.store.products import Product

log = logging.getLogger(__name__)


class Grant(msgspec.Struct, frozen=True):
    product: Product
    kind: KeyKind


class KeyTable(msgspec.Struct, frozen=True):
    grants: dict[str, Grant]
    products: dict[str, Product]
    identifiers: dict[tuple[str, str], Grant] = msgspec.field(default_factory=dict)
    """(format, canonical identifier) -> a write grant: other trackers' names for products."""

    @classmethod
    def from_products(cls, products: list[Product]) -> KeyTable:
        grants: dict[str, Grant] = {}
        identifiers: dict[tuple[str, str], Grant] = {}
        for product in products:
            for key in product.write_keys:
                grants[key] = Grant(product, KeyKind.WRITE)
            for key in product.server_keys:
                grants[key] = Grant(product, KeyKind.SERVER)
            for format, values in product.identifiers.items():
                for value in values:
                    identifiers[(format, value)] = Grant(product, KeyKind.WRITE)
        return cls(grants=grants, products={p.id: p for p in products}, identifiers=identifiers)


Loader = Callable[[], KeyTable]


class ProductDirectory:
    def __init__(self, load: Loader, refresh_seconds: float, miss_interval: float = 1.0) -> None:
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._miss_interval = miss_interval
        self._table = KeyTable(grants={}, products={})
        self._last_miss_reload = float("-inf")
        self._reload: asyncio.Task[None] | None = None
        self._periodic: asyncio.Task[None] | None = None

    @property
    def table(self) -> KeyTable:
        return self._table

    async def start(self) -> None:
        await self.reload()
        self._periodic = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic

    async def reload(self) -> None:
        """Load the table in a thread; concurrent callers share one load."""
        if self._reload is None or self._reload.done():
            self._reload = asyncio.create_task(self._do_reload())
        await asyncio.shield(self._reload)

    async def _do_reload(self) -> None:
        self._table = await asyncio.to_thread(self._load)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.reload()
            except Exception:  # the database may be briefly away; keep serving the last table
                log.exception("could not refresh the product key table")

    def known(self, key: str) -> Grant | None:
        """The grant for ``key`` in the table as it is (no reload: see :meth:`resolve`)."""
        return self._table.grants.get(key)

    async def resolve(self, key: str) -> Grant | None:
        grant = self._table.grants.get(key)
        if grant is not None:
            return grant
        if await self._reload_after_miss():
            return self._table.grants.get(key)
        return None

    async def resolve_identifier(self, format: str, value: str) -> Grant | None:
        """The product another tracker's identifier names (canonical form), as a write grant."""
        grant = self._table.identifiers.get((format, value))
        if grant is not None:
            return grant
        if await self._reload_after_miss():
            return self._table.identifiers.get((format, value))
        return None

    async def _reload_after_miss(self) -> bool:
        """Reload once for an unknown name (it may be new), at most once a ``miss_interval``."""
        now = time.monotonic()
        if now - self._last_miss_reload >= self._miss_interval:
            self._last_miss_reload = now
            try:
                await asyncio.wait_for(self.reload(), timeout=2.0)
            except Exception:
                log.exception("could not reload the product key table")
            return True
        return False

    def product(self, product_id: str) -> Product | None:
        return self._table.products.get(product_id)

    def any_allows_origin(self, origin: str) -> bool:
        return any(p.allows_origin(origin) for p in self._table.products.values())
