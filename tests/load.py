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
    threads: int = 4
    prefix: str = "m"
    acknowledged: set[str] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)
    """Not acknowledged: how many of each answer (``503``, ``ConnectError`` ...)."""
    first_refused: int | None = None
    """How many events had been answered when the first refusal came."""
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
        with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=10) as client:
            for n in range(thread, self.total, self.threads):
                delay = began + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                message = self.message_id(n)
                body = {"type": "track", "userId": f"u{n % 7}", "event": "E", "messageId": message}
                try:
                    outcome = str(client.post("/v1/track", json=body).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self._answered += 1
                    if outcome.startswith("2"):
                        self.acknowledged.add(message)
                    else:
                        self.refused[outcome] += 1
                        if self.first_refused is None:
                            self.first_refused = self._answered
