"""The real collector behind the browser tests: :class:`LiveCollector`.

It has the :class:`~tests.browser.support.Collector` shape, so a browser test can point
the snippet at it as at the capture server, but everything behind ``url`` is the
product: ``collector.app.create_app(settings)`` under uvicorn (lifespan on), Redis,
the RQ batch worker and the SQLAlchemy store. ``messages()`` runs a burst worker and
reads the *store*: what a test sees went through every step a real event takes, and a
retried message appears once because the store deduplicates it, not because the test
does.

Stored events are mapped back to the wire names the tests compare (``type``,
``event``, ``messageId``, ``userId``, ``anonymousId``, ``properties``, ``traits``,
``context``); the canonical :class:`~sightline.model.Event` is under ``"stored"``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from collector.app import create_app
from sightline.model import Event, EventType
from sightline.queue import make_queue
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.products import Product, create_product
from sightline.store.queries import recent_events
from tests.browser.support import WAIT_SECONDS, Message, ServerThread, matches
from tests.servers import RedisServer
from worker.main import run_worker

POLL_SECONDS = 0.1


def extension_origin(unpacked_dir: Path) -> str:
    """The ``chrome-extension://<id>`` origin Chromium gives an unpacked extension.

    Without a ``key`` in its manifest, the id is the SHA-256 of the extension's absolute
    path, its first 32 hex digits written with the letters ``a``-``p`` (Chromium's
    ``crx_file::id_util::GenerateIdForPath``). Knowing it before the browser starts lets
    the product allow the origin before the extension sends its install event.
    """
    digest = hashlib.sha256(str(unpacked_dir.resolve()).encode()).hexdigest()[:32]
    return "chrome-extension://" + "".join(chr(ord("a") + int(c, 16)) for c in digest)


def as_message(event: Event) -> Message:
    """A stored event under the native dialect's field names (``None`` fields left out)."""
    message: Message = {
        "type": event.type.value,
        "event": event.name,
        "messageId": event.message_id,
        "timestamp": event.timestamp.isoformat(),
        "userId": event.user_id,
        "anonymousId": event.anonymous_id,
        "groupId": event.account_id,
        "properties": event.properties,
        "context": event.context,
    }
    if event.type in (EventType.IDENTIFY, EventType.GROUP):
        message["traits"] = event.properties
    return {k: v for k, v in message.items() if v is not None} | {"stored": event}


class LiveCollector:
    """The real collector on 127.0.0.1 with one product allowing ``origins``.

    ``redis`` must be the server ``settings.redis_url`` points at: ``set_down`` pauses
    it (SIGSTOP), so the collector's writes time out and it answers 503 + Retry-After.
    """

    def __init__(self, settings: Settings, redis: RedisServer, origins: tuple[str, ...]) -> None:
        self.settings = settings
        self.redis = redis
        self.engine = make_engine(settings.sqlalchemy_url)
        with self.engine.begin() as conn:
            self.product: Product = create_product(
                conn, "Browser end-to-end", allowed_origins=origins
            )
        self.write_key = self.product.write_keys[0]
        self.server_key = self.product.server_keys[0]
        self.server = ServerThread(create_app(settings))
        self.url = self.server.url
        self.down = False

    def __enter__(self) -> LiveCollector:
        self.server.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.set_down(False)
        self.server.__exit__(exc_type, exc, tb)
        self.engine.dispose()

    # -- the Collector protocol ----------------------------------------------------------

    def messages(self, **match: Any) -> list[Message]:
        """What the store holds for this product, oldest first, after the worker ran."""
        return [m for m in map(as_message, self.events()) if matches(m, match)]

    def wait_for(
        self, count: int = 1, timeout: float = WAIT_SECONDS, **match: Any
    ) -> list[Message]:
        """Waits until at least ``count`` stored events match; returns all that match."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(**match)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(POLL_SECONDS)

    def set_down(self, down: bool) -> None:
        """Hang Redis (the collector answers 503 within its Redis timeout) or resume it."""
        if down and not self.down:
            self.redis.pause()
        elif self.down and not down:
            self.redis.resume()
        self.down = down

    # -- the store -----------------------------------------------------------------------

    def events(self) -> list[Event]:
        """This product's stored events, oldest first, once the queue has been worked."""
        if not self.down and self.queued() > 0:
            run_worker(self.settings, burst=True)
        with self.engine.connect() as conn:
            stored = recent_events(conn, product_id=self.product.id, limit=10_000)
        return stored[::-1]

    def queued(self) -> int:
        """Jobs waiting in the queue (0 when Redis cannot tell within a second)."""
        client = Redis.from_url(self.redis.url, socket_timeout=1.0)
        try:
            return int(make_queue(client, self.settings.queue_name).count)
        except (RedisError, OSError):
            return 0
        finally:
            client.close()
