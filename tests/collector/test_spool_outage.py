"""Redis SIGKILLed under load with the spool on, against real processes: every 2xx is
stored exactly once.

A ``sightline collector`` subprocess (SIGHTLINE_SPOOL=on: ``<data dir>/spool``), a
durable redis-server (append-only, fsync always: what it acknowledged survives its
SIGKILL), SQLite; clients in threads send batches of five events with unique message
ids and note every answer. Redis is killed while they send and restarted later; a
worker then stores what is queued, and the stored message ids are counted.
"""

from __future__ import annotations

import base64
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from collector.spool import SUFFIX
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.products import ensure_default_product
from sightline.store.schema import events
from tests.harness import running_system
from tests.load import wait_for
from tests.servers import RedisServer, free_port
from tests.test_up import read_until, stop, wait_for_names
from tests.test_up import sightline as up_process
from worker.main import run_worker

ROOT = Path(__file__).resolve().parents[2]
EVENTS_PER_REQUEST = 5


@dataclass
class World:
    tmp: Path
    redis: RedisServer
    database_url: str
    write_key: str

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.database_url,
            "SIGHTLINE_DATA_DIR": str(self.data_dir),
            "SIGHTLINE_SPOOL": "on",
            "SIGHTLINE_REDIS_TIMEOUT": "2",
            "SIGHTLINE_FLUSH_LINGER_MS": "2",
            "GEOIP_DB": "off",
            **extra,
        }

    def work(self) -> None:
        settings = Settings.from_env(self.env())
        run_worker(settings, burst=True)

    def stored_message_ids(self) -> collections.Counter[str]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(events.c.message_id)).all()
        finally:
            engine.dispose()
        return collections.Counter(row.message_id for row in rows)


@pytest.fixture
def world(tmp_path: Path, sqlite_template: Path) -> Iterator[World]:
    redis = RedisServer(tmp_path / "redis", durable=True)
    redis.start()
    db = tmp_path / "sightline.db"
    shutil.copyfile(sqlite_template, db)
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    with engine.begin() as conn:
        product, _ = ensure_default_product(conn)
    engine.dispose()
    try:
        yield World(tmp_path, redis, url, product.write_keys[0])
    finally:
        redis.kill()


@dataclass
class Collector:
    process: subprocess.Popen[bytes]
    base: str

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base}/health", timeout=10)

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def collector(world: World, **env: str) -> Iterator[Collector]:
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "sightline", "collector", "--port", str(port)],
        cwd=ROOT,
        env=world.env(**env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    running = Collector(process, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _answers(running), 60, "the collector listens")
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                running.kill()
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
        assert "Traceback" not in output, output


def _answers(running: Collector) -> bool:
    assert running.process.poll() is None, "the collector exited"
    try:
        running.health()
    except httpx.TransportError:
        return False
    return True


@dataclass
class Load:
    """Clients in threads, each sending batches until stopped; every answer noted."""

    base: str
    write_key: str
    threads: int = 3
    answers: list[tuple[int, list[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._send, args=(n,), daemon=True)
            thread.start()
            self._running.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._running:
            thread.join(60)

    def send_one(self, client: httpx.Client, prefix: str) -> int:
        ids = [f"{prefix}-{k}" for k in range(EVENTS_PER_REQUEST)]
        batch = [{"type": "track", "userId": "u", "event": "E", "messageId": m} for m in ids]
        try:
            status = client.post("/v1/batch", json={"batch": batch}).status_code
        except httpx.TransportError:
            status = 0  # no answer: may or may not be stored (at most once)
        with self._lock:
            self.answers.append((status, ids))
        return status

    def _send(self, n: int) -> None:
        auth = base64.b64encode(f"{self.write_key}:".encode()).decode()
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Basic {auth}"}, timeout=30
        ) as client:
            i = 0
            while not self._stop.is_set():
                self.send_one(client, f"t{n}-{i}")
                i += 1
                time.sleep(0.002)  # bounded: a few hundred requests a second at most

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def ids(self, acknowledged: bool) -> list[str]:
        with self._lock:
            return [
                i for status, ids in self.answers if (status == 200) == acknowledged for i in ids
            ]

    def statuses(self) -> collections.Counter[int]:
        with self._lock:
            return collections.Counter(status for status, _ in self.answers)


def assert_exactly_once(world: World, load: Load) -> collections.Counter[str]:
    stored = world.stored_message_ids()
    acknowledged = load.ids(acknowledged=True)
    unanswered = set(load.ids(acknowledged=False))
    missing = [m for m in acknowledged if stored[m] != 1]
    assert not missing, f"{len(missing)} acknowledged events not stored exactly once"
    twice = [m for m, n in stored.items() if n > 1]
    assert not twice, f"{len(twice)} events stored more than once"
    assert set(stored) <= set(acknowledged) | unanswered
    return stored


def test_redis_sigkilled_under_load_every_2xx_stored_exactly_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with collector(world) as running:
        load = Load(running.base, world.write_key)
        load.start()
        try:
            wait_for(lambda: load.count() >= 100, 60, "100 answers before the kill")
            world.redis.kill()
            killed_at = load.count()
            wait_for(lambda: load.count() >= killed_at + 300, 120, "300 answers in the outage")
            health = running.health()
            assert health.status_code == 200, health.text  # accepting: the spool has room
            assert health.json()["status"] == "degraded"
            assert health.json()["spool"]["bytes"] > 0
            world.redis.start()  # same port, same append-only file
            restarted_at = load.count()
            wait_for(lambda: load.count() >= restarted_at + 100, 120, "100 answers after")
        finally:
            load.stop()
        wait_for(lambda: running.health().json()["spool"]["bytes"] == 0, 60, "spool drained")
        spooled = running.metric("sightline_spool_events_spooled_total")
        drained = running.metric("sightline_spool_events_drained_total")
        assert spooled > 0 and drained == spooled
        assert running.health().json()["redis"] == "ok"
    assert load.statuses() == {200: load.count()}, "every request is answered 2xx"
    world.work()
    stored = assert_exactly_once(world, load)
    assert sum(stored.values()) == len(load.ids(acknowledged=True))
    with capsys.disabled():
        print(
            f"\n[Redis SIGKILL, spool on] {load.count()} requests, all 2xx; "
            f"{restarted_at - killed_at} answered while Redis was down; spooled {spooled:.0f} "
            f"events, drained {drained:.0f}; stored {sum(stored.values())} = acknowledged, "
            "0 lost, 0 duplicated"
        )
    # The collector stopped with an empty spool: its file is gone.
    assert list(world.spool_dir.glob(f"*{SUFFIX}")) == []


@contextmanager
def worker_processes(world: World) -> Iterator[Callable[[], None]]:
    """``sightline worker`` in its own session; the function starts another if it died."""
    running: list[subprocess.Popen[bytes]] = []

    def ensure() -> None:
        if running and running[-1].poll() is None:
            return
        running.append(
            subprocess.Popen(
                [sys.executable, "-m", "sightline", "worker"],
                cwd=ROOT,
                env=world.env(),
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    ensure()
    try:
        yield ensure
    finally:
        for process in running:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_redis_sigkilled_while_a_worker_stores_every_2xx_stored_exactly_once(
    world: World,
) -> None:
    """The same with a worker running throughout: the job it held when Redis died is
    recovered, the spooled ones follow; nothing is lost or stored twice."""
    with collector(world) as running, worker_processes(world) as ensure_worker:
        load = Load(running.base, world.write_key)
        load.start()
        try:
            wait_for(lambda: load.count() >= 100, 60, "100 answers before the kill")
            world.redis.kill()
            killed_at = load.count()
            wait_for(lambda: load.count() >= killed_at + 200, 120, "200 answers in the outage")
            world.redis.start()
            ensure_worker()  # if it gave up while Redis was away
            restarted_at = load.count()
            wait_for(lambda: load.count() >= restarted_at + 100, 120, "100 answers after")
        finally:
            load.stop()
        acknowledged = set(load.ids(acknowledged=True))

        def all_stored() -> bool:
            ensure_worker()
            return acknowledged <= set(world.stored_message_ids())

        wait_for(all_stored, 120, "every acknowledged event is stored")
    assert load.statuses() == {200: load.count()}, "every request is answered 2xx"
    stored = assert_exactly_once(world, load)
    assert sum(stored.values()) == len(acknowledged)


def test_redis_hung_under_load_every_2xx_stored_exactly_once(world: World) -> None:
    """SIGSTOP: a write that timed out is spooled, and may still land when Redis resumes:
    the worker stores its events once (their message ids are the same)."""
    with collector(world) as running:
        load = Load(running.base, world.write_key)
        load.start()
        try:
            wait_for(lambda: load.count() >= 100, 60, "100 answers before the hang")
            world.redis.pause()
            paused_at = load.count()
            wait_for(lambda: load.count() >= paused_at + 200, 120, "200 answers in the hang")
            health = running.health()
            assert (health.status_code, health.json()["status"]) == (200, "degraded")
            world.redis.resume()
            resumed_at = load.count()
            wait_for(lambda: load.count() >= resumed_at + 100, 120, "100 answers after")
        finally:
            load.stop()
        wait_for(lambda: running.health().json()["spool"]["bytes"] == 0, 60, "spool drained")
        assert running.metric("sightline_spool_events_spooled_total") > 0
    assert load.statuses() == {200: load.count()}, "every request is answered 2xx"
    world.work()
    stored = assert_exactly_once(world, load)
    assert sum(stored.values()) == len(load.ids(acknowledged=True))


def test_a_full_spool_answers_503_and_nothing_is_stored_twice(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with collector(world, SIGHTLINE_SPOOL_MAX_BYTES="30000") as running:
        load = Load(running.base, world.write_key, threads=2)
        load.start()
        try:
            wait_for(lambda: load.count() >= 50, 60, "50 answers before the kill")
            world.redis.kill()
            wait_for(lambda: load.statuses()[503] >= 30, 120, "503s once the spool is full")
            assert running.health().status_code == 503  # full: not accepting
            world.redis.start()
            wait_for(lambda: running.health().json()["spool"]["bytes"] == 0, 60, "drained")
            answered = load.count()
            wait_for(lambda: load.count() >= answered + 50, 120, "answers after the outage")
        finally:
            load.stop()
    statuses = load.statuses()
    assert set(statuses) <= {200, 503}
    assert statuses[200] > 50 and statuses[503] >= 30
    world.work()
    stored = assert_exactly_once(world, load)
    refused = load.ids(acknowledged=False)
    with capsys.disabled():
        print(
            f"\n[Redis SIGKILL, 30 kB spool] {statuses[200]} requests 2xx, {statuses[503]} 503; "
            f"stored {sum(stored.values())} events: every 2xx once, "
            f"{sum(stored[m] for m in refused)} of {len(refused)} refused"
        )


def test_a_collector_killed_with_a_full_spool_leaves_it_to_the_next_one(world: World) -> None:
    with collector(world) as first:
        load = Load(first.base, world.write_key)
        world.redis.kill()
        with httpx.Client(base_url=first.base, headers=_auth(world), timeout=30) as client:
            statuses = [load.send_one(client, f"before-{i}") for i in range(20)]
        assert statuses == [200] * 20
        first.kill()  # SIGKILL with 100 events in its spool
    [orphan] = world.spool_dir.glob(f"*{SUFFIX}")
    world.redis.start()
    with collector(world) as second:
        wait_for(lambda: not orphan.exists(), 60, "the orphaned spool is drained and deleted")
        assert second.metric("sightline_spool_events_drained_total") == 100
        assert second.health().json()["spool"]["bytes"] == 0
    world.work()
    stored = assert_exactly_once(world, load)
    assert sum(stored.values()) == 100


def _auth(world: World) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{world.write_key}:".encode()).decode()}


def test_a_collector_started_while_redis_is_away_spools_then_drains(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """As uvicorn's supervisor starts a replacement collector: no start-up check of Redis."""
    redis = RedisServer(tmp_path / "redis")  # not started yet
    db = tmp_path / "sightline.db"
    shutil.copyfile(sqlite_template, db)
    settings = Settings.from_env(
        {
            "REDIS_URL": redis.url,
            "DATABASE_URL": f"sqlite:///{db}",
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "SIGHTLINE_SPOOL": "on",
            "SIGHTLINE_REDIS_TIMEOUT": "2",
            "GEOIP_DB": "off",
        }
    )
    with running_system(settings) as system:
        for i in range(10):
            response = system.send("/v1/track", {"userId": "u", "event": "E", "messageId": f"m{i}"})
            assert response.status_code == 200, response.text
        health = system.client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "degraded")
        redis.start()
        try:
            wait_for(
                lambda: system.client.get("/health").json()["spool"]["bytes"] == 0, 60, "drained"
            )
            system.work()
            assert sorted(e.message_id for e in system.events()) == sorted(
                f"m{i}" for i in range(10)
            )
        finally:
            redis.kill()


def test_up_gives_each_collector_its_own_spool_file_under_the_data_dir(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    args = ("up", "--port", str(port), "--collectors", "2", "--workers", "1")
    with up_process(data_dir, *args, SIGHTLINE_SPOOL="on") as (process, lines):
        key = read_until(process, lines, r"write key").split()[-1]
        read_until(process, lines, r"Collector on")
        spool_dir = data_dir / "spool"
        wait_for(lambda: len(list(spool_dir.glob(f"*{SUFFIX}"))) == 2, 30, "two spool files")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["spool"] == {"bytes": 0, "max_bytes": Settings().spool_max_bytes}
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/track",
            auth=(key, ""),
            json={"userId": "u1", "event": "Hello"},
            timeout=10,
        )
        assert response.status_code == 200
        wait_for_names(data_dir, ["Hello"])
        stop(process, lines)
    assert list(spool_dir.glob(f"*{SUFFIX}")) == [], "empty spool files go at a clean stop"
