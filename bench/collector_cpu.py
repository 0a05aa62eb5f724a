"""CPU per request of the collector app against the plain route, with no HTTP in between.

    python bench/collector_cpu.py [--rounds 600] [--concurrency 64]

Drives the ASGI apps in-process (uvloop, ``concurrency`` requests at a time, the
same single-event ``POST /v1/track`` as bench/collector.py), the collector with its
lifespan, a real Redis (embedded defaults) and real group commits. Without uvicorn,
httptools and sockets, what is left is the apps' own Python work, so this shows
where bench/collector.py's ratio goes. Prints one JSON line.

A third app is the plain route made to wait once, as every collector request waits
for its group commit's acknowledgement (a future another task resolves): resuming
a request walks back through every coroutine frame of the ASGI stack, which the
plain route, never suspended, does not pay.

The two plain routes are measured before the collector's modules are imported, as in a
process of their own (bench/collector.py runs each app in its own): the cyclic GC walks
the whole heap now and then, and in the heap the collector's imports make (SQLAlchemy,
Alembic, RQ...: ~110,000 objects against ~22,000), the waiting route's full collections
had cost it ~12 µs per request more (its 30-36 µs of earlier runs, against ~16).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from bench.plain_app import app as plain_app

T = TypeVar("T")


def waiting_plain_app() -> ASGIApp:
    """The plain route, but each request awaits a future that a flusher task resolves."""
    waiters: list[asyncio.Future[None]] = []
    wakeup = asyncio.Event()

    async def flusher() -> None:
        while True:
            await wakeup.wait()
            wakeup.clear()
            ready = waiters[:]
            waiters.clear()
            for waiter in ready:
                waiter.set_result(None)

    flushers: list[asyncio.Task[None]] = []

    async def track(request: Request) -> Response:
        if not flushers:
            flushers.append(asyncio.create_task(flusher()))
        await request.body()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        wakeup.set()
        await waiter
        return Response(status_code=204)

    return Starlette(routes=[Route("/v1/track", track, methods=["POST"])])


BODY = b'{"userId":"user-1","event":"Bench Event","properties":{"plan":"pro","seats":3}}'


def request_scope(key: str, state: dict[str, Any]) -> dict[str, Any]:
    auth = b"Basic " + base64.b64encode(f"{key}:".encode())
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/track",
        "raw_path": b"/v1/track",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"authorization", auth),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }


async def one_request(app: ASGIApp, key: str, state: dict[str, Any]) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(request_scope(key, state), receive, send)
    return int(sent[0]["status"])


async def with_lifespan(app: ASGIApp, run: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
    state: dict[str, Any] = {}
    started = asyncio.Event()
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError(message.get("message"))

    async def lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, receive, send)

    task = asyncio.create_task(lifespan())
    await started.wait()
    try:
        return await run(state)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


async def measure(app: ASGIApp, key: str, rounds: int, concurrency: int) -> dict[str, float]:
    async def run(state: dict[str, Any]) -> dict[str, float]:
        async def round_() -> list[int]:
            return await asyncio.gather(*(one_request(app, key, state) for _ in range(concurrency)))

        for _ in range(20):  # warm-up
            await round_()
        cpu, wall = time.process_time(), time.perf_counter()
        statuses: set[int] = set()
        for _ in range(rounds):
            statuses.update(await round_())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if not statuses <= {200, 204}:
            raise RuntimeError(f"unexpected statuses {statuses}")
        n = rounds * concurrency
        return {"cpu_us_per_request": cpu / n * 1e6, "wall_us_per_request": wall / n * 1e6}

    return await with_lifespan(app, run)


def measure_collector(rounds: int, concurrency: int) -> dict[str, float]:
    """The collector app with a real Redis; its modules imported only now (see the module)."""
    from collector.app import create_app
    from sightline.embedded import EmbeddedRedis
    from sightline.settings import Settings
    from sightline.store.db import make_engine
    from sightline.store.migrate import upgrade
    from sightline.store.products import create_product

    with (
        tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp,
        EmbeddedRedis(Path(tmp)) as redis,
    ):
        settings = Settings(
            data_dir=Path(tmp), redis_url=redis.url, database_url=f"sqlite:///{tmp}/bench.db"
        )
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        with engine.begin() as conn:
            key = create_product(conn, "bench").write_keys[0]
        engine.dispose()
        return uvloop.run(measure(create_app(settings), key, rounds, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    # The plain routes read no key: any will do.
    plain = uvloop.run(measure(plain_app, "bench", args.rounds, args.concurrency))
    waiting = uvloop.run(measure(waiting_plain_app(), "bench", args.rounds, args.concurrency))
    real = measure_collector(args.rounds, args.concurrency)
    print(
        json.dumps(
            {
                "bench": "collector_cpu",
                "concurrency": args.concurrency,
                "requests": args.rounds * args.concurrency,
                "plain_cpu_us": round(plain["cpu_us_per_request"], 1),
                "plain_waiting_once_cpu_us": round(waiting["cpu_us_per_request"], 1),
                "collector_cpu_us": round(real["cpu_us_per_request"], 1),
                "ratio": round(plain["cpu_us_per_request"] / real["cpu_us_per_request"], 3),
                "ratio_to_waiting": round(
                    waiting["cpu_us_per_request"] / real["cpu_us_per_request"], 3
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
