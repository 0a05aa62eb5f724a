"""A bounded load generator for the fault tests: N track events with distinct message ids,
sent over HTTP by a few client threads at a steady pace, every answer recorded.

An event is *acknowledged* when its request got a 2xx; any other answer (a 503 while
Redis is away, a connection error, a timeout) is *not acknowledged*, and such an event
may still be stored (at most once), never required.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from sightline.queue import make_queue
from sightline.redis_keys import workers_key
from sightline.serializer import JSONSerializer
from sightline.settings import DEFAULT_QUEUE
from sightline.store.db import make_engine
from sightline.store.schema import events

QUEUE = DEFAULT_QUEUE
ROOT = Path(__file__).resolve().parents[1]


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


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


class Stored:
    """The message ids in the store, read as they are written."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def message_ids(self) -> list[str] | None:
        try:
            with self.engine.connect() as conn:
                return [r.message_id for r in conn.execute(sa.select(events.c.message_id))]
        except sa.exc.OperationalError:  # the database restarting
            return None


def drained(redis: Redis) -> bool:
    """Nothing queued, running, stranded or scheduled for a retry."""
    try:
        queue = make_queue(redis, QUEUE)
        started = StartedJobRegistry(QUEUE, connection=redis)
        return (
            queue.count == 0
            and started.count == 0
            and redis.llen(queue.intermediate_queue_key) == 0
            and queue.scheduled_job_registry.count == 0
        )
    except Exception:  # Redis restarting
        return False


def settle(load: Load, stored: Stored, redis: Redis, timeout: float) -> list[str]:
    """Wait until every acknowledged event is stored and the queue is drained."""

    def done() -> bool:
        ids = stored.message_ids()
        return ids is not None and load.acknowledged <= set(ids) and drained(redis)

    try:
        wait_for(done, timeout, "every acknowledged event stored and the queue drained")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {where(load, stored, redis)}") from None
    time.sleep(1.0)  # anything still on its way would show now
    ids = stored.message_ids()
    assert ids is not None
    return ids


def where(load: Load, stored: Stored, redis: Redis) -> str:
    """What is left, and where: for a failure's message."""
    ids = set(stored.message_ids() or [])
    missing = load.acknowledged - ids
    queue = make_queue(redis, QUEUE)
    found: dict[str, list[str]] = {}
    for key in redis.scan_iter("rq:job:*"):
        if redis.type(key) != b"hash":
            continue
        try:
            job = Job.fetch(
                key.decode().split(":")[-1], connection=redis, serializer=JSONSerializer
            )
            text = json.dumps(job.args)
        except Exception as exc:  # a job RQ cannot read back is worth reporting too
            found[key.decode()] = [repr(exc)]
            continue
        holds = [m for m in missing if f'"{m}"' in text]
        if holds:
            status, worker = job.get_status(), job.worker_name
            found[job.id] = [str(status), str(worker), f"{len(holds)} of them"]
    return (
        f"missing {len(missing)} (e.g. {sorted(missing)[:5]}); queued {queue.count}, "
        f"started {StartedJobRegistry(QUEUE, connection=redis).get_job_ids()}, "
        f"intermediate {redis.lrange(queue.intermediate_queue_key, 0, -1)}, "
        f"scheduled {queue.scheduled_job_registry.get_job_ids()}, "
        f"failed {FailedJobRegistry(QUEUE, connection=redis).get_job_ids()}, "
        f"workers {redis.smembers(workers_key(QUEUE))}, jobs holding them {found}"
    )


def tally(load: Load, ids: list[str]) -> tuple[int, int, int, int]:
    """(lost, duplicated, never sent, refused but stored)."""
    stored = set(ids)
    return (
        len(load.acknowledged - stored),
        len(ids) - len(stored),
        len(stored - load.sent),
        len(stored - load.acknowledged),
    )


@contextmanager
def collector_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 (a pipe nobody reads could block it)
    process = subprocess.Popen(
        [sys.executable, "-m", "sightline", "collector", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        with suppress(AssertionError):
            wait_for(lambda: process.poll() is not None or _healthy(port), 60, "/health")
        if not _healthy(port):
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise AssertionError(f"the collector (exit {process.poll()}) is not up:\n{output}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
