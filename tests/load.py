"""A bounded load generator for the fault tests: N track events with distinct message ids,
sent over HTTP by a few client threads at a steady pace, every answer recorded.

An event is *acknowledged* when its request got a 2xx; any other answer (a 503 while
Redis is away, a connection error, a timeout) is *not acknowledged*, and such an event
may still be stored (at most once), never required.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Load:
    url: str
    """The collector's origin, ``http://127.0.0.1:PORT``."""
    write_key: str
    total: int
    rate: float = 600.0
    """Events per second, all threads together (a floor on the run's length)."""
    per_request: int = 1
    """Events per request: one ``/v1/track`` each, or ``/v1/batch`` requests of this many
    (fewer, larger jobs for the workers; a batch is acknowledged or refused whole)."""
    threads: int = 4
    prefix: str = "m"
    acknowledged: set[str] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)
    """Events not acknowledged, by answer (``503``, ``ConnectError`` ...)."""
    _answered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def message_id(self, n: int) -> str:
        return f"{self.prefix}-{n}"

    @property
    def sent(self) -> set[str]:
        return {self.message_id(n) for n in range(self.total)}

    @property
    def answered(self) -> int:
        with self._lock:
            return self._answered

    def start(self) -> None:
        began = time.monotonic()
        for t in range(self.threads):
            worker = threading.Thread(target=self._send, args=(t, began), daemon=True)
            worker.start()
            self._workers.append(worker)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), f"load not done in {timeout} s"

    def _send(self, thread: int, began: float) -> None:
        size = self.per_request
        with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=10) as client:
            for first in range(thread * size, self.total, self.threads * size):
                delay = began + first / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                messages = [self.message_id(n) for n in range(first, min(first + size, self.total))]
                batch = [
                    {"type": "track", "userId": f"u{hash(m) % 7}", "event": "E", "messageId": m}
                    for m in messages
                ]
                try:
                    if size == 1:
                        response = client.post("/v1/track", json=batch[0])
                    else:
                        response = client.post("/v1/batch", json={"batch": batch})
                    outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self._answered += len(messages)
                    if outcome.startswith("2"):
                        self.acknowledged.update(messages)
                    else:
                        self.refused[outcome] += len(messages)
