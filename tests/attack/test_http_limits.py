"""Request heads are bounded in size and time (issue 14, findings 1 and 4).

Against the real collector app under uvicorn with the protocol ``sightline up`` and
``sightline collector`` run (``collector.server.BoundedHttpToolsProtocol``), on a
loopback socket; the timeouts are shortened for the test.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest
import uvicorn
from redis import Redis

from collector import server as limits
from collector.app import create_app
from sightline.queue import make_queue
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.products import Product, ensure_default_product

SHORT = 0.5


class Running:
    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings), log_level="error", http=limits.BoundedHttpToolsProtocol
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return conn


@pytest.fixture
def running(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Running, Product]]:
    monkeypatch.setattr(limits, "HEAD_TIMEOUT", SHORT)
    monkeypatch.setattr(limits, "BODY_TIMEOUT", SHORT)
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        product, _ = ensure_default_product(conn)
    engine.dispose()
    server = Running(settings)
    server.thread.start()
    deadline = time.monotonic() + 10
    while not server.server.started:
        assert time.monotonic() < deadline, "collector did not start"
        time.sleep(0.01)
    yield server, product
    server.server.should_exit = True
    server.thread.join(10)


def answer(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_huge_header_is_a_431_in_bounded_memory(running: tuple[Running, Product]) -> None:
    server, _ = running
    before = rss_mb()
    conn = server.connect()
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nCookie: ")
    sent = 0
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while sent < 50 << 20:  # the server closes long before 50 MB
            conn.sendall(b"A" * 65536)
            sent += 65536
    assert sent < 4 << 20
    assert rss_mb() - before < 40  # peak RSS of this process, server included


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_too_many_headers_is_a_431(running: tuple[Running, Product]) -> None:
    server, _ = running
    conn = server.connect()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(limits.MAX_HEADERS + 5)
    )
    conn.sendall(head + b"\r\n")
    raw = answer(conn)
    assert status(raw) == 431, raw[:200]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_half_sent_heads_and_bodies_are_timed_out(
    running: tuple[Running, Product], settings: Settings
) -> None:
    server, product = running
    silent = server.connect()
    half_head = server.connect()
    half_head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    half_body = server.connect()
    body = msgspec.json.encode({"userId": "u", "event": "Half"})
    half_body.sendall(
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Write-Key: " + product.write_keys[0].encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
    )
    started = time.monotonic()
    for conn in (silent, half_head, half_body):
        raw = answer(conn)
        assert status(raw) in (0, 408), raw[:200]  # 408, or closed before a request began
    assert time.monotonic() - started < SHORT * 6
    redis = Redis.from_url(settings.redis_url or "")
    assert make_queue(redis, settings.queue_name).count == 0  # the half body was not accepted
    redis.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ordinary_requests_and_large_bodies_still_work(running: tuple[Running, Product]) -> None:
    server, product = running
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E" * 200}] * 1500}
    body = msgspec.json.encode(batch)
    assert len(body) > 300_000
    conn = server.connect()
    conn.sendall(
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nX-Write-Key: " + product.write_keys[0].encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    for start in range(0, len(body), 50_000):  # slowly, but never pausing for long
        conn.sendall(body[start : start + 50_000])
        time.sleep(SHORT / 5)
    raw = answer(conn)
    assert status(raw) == 200, raw[:300]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_kept_alive_connection_gets_each_request_its_own_time(
    running: tuple[Running, Product],
) -> None:
    """One timer per connection, moved rather than set anew: a request that begins after
    others gets its whole time, then its 408."""
    server, _ = running
    conn = server.connect()
    for _ in range(3):
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = conn.recv(65536)
        while b"\r\n\r\n" not in raw:
            raw += conn.recv(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += conn.recv(65536)
        assert status(raw) in (200, 503)
        time.sleep(SHORT / 2)  # the timer of the last request is still set
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half a head
    began = time.monotonic()
    raw = answer(conn)
    assert status(raw) == 408, raw[:200]
    assert time.monotonic() - began >= SHORT * 0.9  # not cut short by an earlier deadline
