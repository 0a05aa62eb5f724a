"""Group commit: concurrent requests share one RQ job; replies wait for Redis's ack."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import DataError, ResponseError

from collector.groupcommit import GroupCommitter, write_async
from sightline.envelope import Envelope
from sightline.errors import QueueUnavailable
from sightline.queue import make_queue
from tests.harness import System
from worker.recovery import Recovery


class Colour(str, enum.Enum):  # as RQ's JobStatus
    RED = "red"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def envelope(n: int) -> Envelope:
    return Envelope(
        id=str(n),
        dialect="native",
        kind="track",
        product_id="p",
        received_at=datetime.now(UTC),
        body=msgspec.Raw(b'{"userId":"u","event":"E"}'),
    )


@pytest.mark.anyio
async def test_requests_waiting_on_a_write_share_the_next_one() -> None:
    flushes: list[int] = []
    gate = asyncio.Event()

    async def slow_write(envelopes: Sequence[Envelope]) -> None:
        flushes.append(len(envelopes))
        await gate.wait()  # the first write is "in flight" while the others arrive

    committer = GroupCommitter(slow_write, timeout=5)
    await committer.start()
    first = asyncio.create_task(committer.submit([envelope(0)]))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(committer.submit([envelope(i)])) for i in range(1, 51)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in [first, *rest]), "nobody is answered before the ack"
    gate.set()
    await asyncio.gather(first, *rest)
    await committer.stop()
    assert flushes == [1, 50]


@pytest.mark.anyio
async def test_a_hung_write_times_out_into_503s() -> None:
    async def hung(envelopes: Sequence[Envelope]) -> None:
        await asyncio.sleep(3600)

    committer = GroupCommitter(hung, timeout=0.2)
    await committer.start()
    results = await asyncio.gather(
        *(committer.submit([envelope(i)]) for i in range(3)), return_exceptions=True
    )
    await committer.stop()
    assert all(isinstance(r, QueueUnavailable) for r in results)


@pytest.mark.anyio
async def test_a_failed_write_fails_every_waiter_of_that_flush() -> None:
    async def broken(envelopes: Sequence[Envelope]) -> None:
        raise ConnectionError("redis down")

    committer = GroupCommitter(broken, timeout=1)
    await committer.start()
    results = await asyncio.gather(
        *(committer.submit([envelope(i)]) for i in range(3)), return_exceptions=True
    )
    await committer.stop()
    assert all(isinstance(r, QueueUnavailable) for r in results)


@pytest.mark.anyio
async def test_stop_flushes_what_is_pending() -> None:
    written: list[int] = []

    async def write(envelopes: Sequence[Envelope]) -> None:
        written.append(len(envelopes))

    committer = GroupCommitter(write, linger=0.2)
    await committer.start()
    task = asyncio.create_task(committer.submit([envelope(1), envelope(2)]))
    await asyncio.sleep(0)
    await committer.stop()
    await task
    assert written == [2]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_flush_is_one_rq_job_holding_every_envelope(system: System) -> None:
    batch = [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(40)]
    assert system.send("/v1/batch", {"batch": batch}).status_code == 200
    assert system.queued_jobs() == 1
    [job] = make_queue(system.redis, system.settings.queue_name).get_jobs()
    assert job.func_name == "worker.jobs.process_batch" and len(job.args[0]) == 40
    assert job.description == "process_batch(40 envelopes)"
    assert system.status().accepted == 40
    metrics = system.metrics()
    assert 'sightline_requests_total{dialect="native",status="200"} 1.0' in metrics
    assert 'sightline_events_enqueued_total{dialect="native"} 40.0' in metrics
    assert "sightline_flush_batch_size_count 1.0" in metrics
    system.work()
    assert len(system.events()) == 40


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health(system: System) -> None:
    """Degraded (still 200: events are accepted) while no worker is alive to store them."""
    response = system.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "redis": "ok", "workers": 0}
    queue = make_queue(system.redis, system.settings.queue_name)
    recovery = Recovery(system.redis, queue, "worker-1", ttl=5)
    recovery.start()  # what a worker does when it starts: registers, keeps a liveness key
    try:
        assert system.client.get("/health").json() == {"status": "ok", "redis": "ok", "workers": 1}
    finally:
        recovery.stop()
    assert system.client.get("/health").json()["status"] == "degraded"


@pytest.mark.anyio
async def test_an_idle_collector_acknowledges_at_once_whatever_the_linger() -> None:
    written: list[int] = []

    async def write(envelopes: Sequence[Envelope]) -> None:
        written.append(len(envelopes))

    committer = GroupCommitter(write, linger=30.0)
    await committer.start()
    # Idle: no waiting at all (a 30 s linger would make this time out).
    await asyncio.wait_for(committer.submit([envelope(1)]), timeout=5)
    await asyncio.wait_for(committer.submit([envelope(2)]), timeout=5)
    await committer.stop()
    assert written == [1, 1]


@pytest.mark.anyio
async def test_a_busy_collector_gathers_while_requests_keep_arriving() -> None:
    written: list[int] = []
    release = asyncio.Event()

    async def write(envelopes: Sequence[Envelope]) -> None:
        written.append(len(envelopes))
        if len(written) == 1:
            await release.wait()  # the first flush is slow: the next requests queue up

    committer = GroupCommitter(write, linger=30.0, gap=0.05)
    await committer.start()
    first = asyncio.create_task(committer.submit([envelope(0)]))
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(committer.submit([envelope(1)]))]
    release.set()  # back to back: the flusher now gathers while requests keep coming
    for i in range(2, 12):
        await asyncio.sleep(0.005)  # arrivals closer together than the gap
        waiting.append(asyncio.create_task(committer.submit([envelope(i)])))
    await asyncio.wait_for(asyncio.gather(first, *waiting), timeout=10)
    await committer.stop()
    assert written[0] == 1
    assert written[1] == 11, written  # one job for every request that kept arriving


@pytest.mark.anyio
async def test_closed_loop_clients_are_not_held_for_the_linger() -> None:
    """Clients whose next request waits for their answer: a quiet gap ends each wait."""
    written: list[int] = []

    async def write(envelopes: Sequence[Envelope]) -> None:
        written.append(len(envelopes))
        await asyncio.sleep(0.002)

    committer = GroupCommitter(write, linger=2.0, gap=0.01)
    await committer.start()

    async def client(n: int) -> None:
        for i in range(10):
            await committer.submit([envelope(n * 100 + i)])

    # Ten rounds each held for the 2 s linger would take 20 s.
    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(4))), timeout=10)
    await committer.stop()
    assert sum(written) == 40


@pytest.mark.anyio
async def test_an_open_loop_stream_fills_jobs_of_about_rate_times_linger() -> None:
    """Independent clients at a steady rate, arrivals further apart than the minimum gap:
    the quiet gap follows the rate, so jobs hold many requests, not one or two each."""
    written: list[int] = []

    async def write(envelopes: Sequence[Envelope]) -> None:
        written.append(len(envelopes))
        await asyncio.sleep(0.006)  # a slow Redis: requests arrive while a flush is out

    committer = GroupCommitter(write, linger=0.2, gap=0.002)
    await committer.start()
    sent = [asyncio.create_task(committer.submit([envelope(0)]))]
    for i in range(1, 150):
        await asyncio.sleep(0.004)  # 250 a second, twice the minimum gap apart
        sent.append(asyncio.create_task(committer.submit([envelope(i)])))
    await asyncio.wait_for(asyncio.gather(*sent), timeout=10)
    await committer.stop()
    assert sum(written) == 150
    # A fixed 2 ms gap would flush nearly every request alone (about 150 jobs).
    assert len(written) < 40, written


@pytest.mark.anyio
async def test_a_write_runs_every_command_as_multi_exec_would(redis_url: str) -> None:
    """One atomic step: every command runs, even after one fails, and the first failure
    is raised (the flush is answered 503 or spooled, as before)."""
    redis = AsyncRedis.from_url(redis_url)
    try:
        await redis.set("a-string", "x")
        await write_async(redis, [(("SET", "k1", "1"), {}), (("INCRBY", "k2", 5), {})])
        assert await redis.mget("k1", "k2") == [b"1", b"5"]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await write_async(
                redis,
                [
                    (("RPUSH", "list", "first"), {}),
                    (("SADD", "a-string", "member"), {}),
                    (("INCRBY", "k2", 1), {}),
                ],
            )
        assert await redis.lrange("list", 0, -1) == [b"first"]
        assert await redis.get("k2") == b"6"
        await redis.script_flush()  # a restarted Redis: the script is loaded again
        await write_async(redis, [(("INCRBY", "k2", 1), {})])
        assert await redis.get("k2") == b"7"
        # Arguments arrive as redis-py would send them: numbers as their text (beyond a
        # double's 53 bits too), a str enum as its value, bytes as they are.
        big = 2**62 + 1
        fields = ("HSET", "h", "i", big, "f", 0.1, "s", Colour.RED, "b", b"\xff\x00")
        await write_async(redis, [(fields, {})])
        assert await redis.hgetall("h") == {
            b"i": str(big).encode(),
            b"f": b"0.1",
            b"s": b"red",
            b"b": b"\xff\x00",
        }
        with pytest.raises(DataError):
            await write_async(redis, [(("SET", "k3", True), {})])
        assert await redis.get("k3") is None
    finally:
        await redis.aclose()
