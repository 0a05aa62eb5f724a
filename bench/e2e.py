"""The whole system under an open-loop load: the highest rate it sustains.

    python bench/e2e.py [--database-url URL] [--workers N] [--seconds 30]
                        [--fractions 0.05,0.1,0.2,0.3,0.45,0.6,0.8,1.0] [--refine 2]
                        [--drain-only]

1. The collector alone (``sightline collector``, no worker) under wrk (closed loop,
   64 connections, 10 s): its rate R, the ceiling of what can be acknowledged. Then
   the N workers of ``sightline up`` store what it accepted (jobs of the collector's
   natural size, the collector idle): their rate, from the first event stored to the
   last, over R is "N workers / one collector" on the very same events
   (``--workers 1 --drain-only``: one worker, and no steps).
2. ``sightline up`` (one collector, N workers, Redis, the store) under autocannon
   (npm, a devDependency) at a constant rate, ``--seconds`` each, at increasing
   fractions of R until a rate is not sustained; then ``--refine`` times at the rate
   halfway between the last sustained and the first not sustained (bisection).
   Alongside, a probe sends 20 events a second with unique message ids and polls the
   store for them (an index search of the product's message ids): its p99 is
   "accepted -> stored". The backlog (envelopes accepted minus processed, from
   Sightline's Redis counters) is sampled every second.
3. A rate is sustained when autocannon sent at least 97 % of it (a collector slow to
   answer is offered less), every request got a 2xx, the backlog at the end is no
   larger than after the first 5 s (plus one second of arrivals, for noise), and
   the probe's p99 is under 1 s. Prints one JSON line: each step, the highest
   sustained rate, and that rate divided by R (goal: >= 0.8).
4. Each step also counts the CPU each part used per request sent (``up``'s process, the
   collector; its workers; its Redis; every PostgreSQL process; autocannon, which runs on
   the same cores) and the rate at which that total would fill every core: on a machine
   of few cores, the bound that the sum of the parts puts on any sustained rate.

Loopback only, bounded in time (at most ``(fractions + refine) x seconds`` plus set-up
and the drains between steps).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import sqlalchemy as sa
from redis import Redis

from bench.collector import LUA, free_port, wrk
from bench.procfs import all_processes
from sightline.redis_keys import Counter, counter_key
from sightline.store.db import make_engine, read_connection
from sightline.store.schema import event_keys, events

ROOT = Path(__file__).resolve().parent.parent
BODY = '{"userId":"user-1","event":"Bench Event","properties":{"plan":"pro","seats":3}}'
PROBE_RATE = 20
DELIVERED = 0.97
"""Of the target rate, what autocannon must have sent for a step to count: its 64
connections wait for their answers, so a collector slower to answer is offered less."""


def start(
    data_dir: Path, args: list[str], env: dict[str, str], port: int
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sightline", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"sightline {' '.join(args)} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()


def backlog(redis: Redis, queue: str) -> int:
    accepted, processed = redis.mget(
        [counter_key(queue, Counter.ACCEPTED), counter_key(queue, Counter.PROCESSED)]
    )
    return int(accepted or 0) - int(processed or 0)


def cpu_by_process(up_pid: int) -> dict[int, tuple[str, float]]:
    """The role and the CPU seconds used so far of each process of the system: ``up``'s
    own (the collector), its worker processes (with their children: RQ's scheduler), its
    Redis, and every PostgreSQL process on the machine (the store, when it is
    PostgreSQL)."""
    processes = all_processes()
    roles: dict[int, tuple[str, float]] = {}
    for pid, times in processes.items():
        parent = times.parent
        ancestors: list[int] = []
        while parent in processes and len(ancestors) < 8:
            ancestors.append(parent)
            parent = processes[parent].parent
        if times.name == "postgres":
            roles[pid] = ("postgresql", times.own)
        elif pid == up_pid:
            roles[pid] = ("collector", times.own)
        elif up_pid in ancestors:
            roles[pid] = ("redis" if times.name.startswith("redis") else "workers", times.own)
    return roles


class Probe(threading.Thread):
    """``PROBE_RATE`` events a second with unique message ids; when each is stored.

    The poll is an index search of the product's message ids (SQLite: the events' unique
    key; PostgreSQL: ``event_keys``, written in the events' transaction) in a snapshot
    read. A poll by message id alone scanned every stored event twenty times a second, a
    load that grew with the store and took the cores the system under test runs on; and
    on SQLite a plain connection begins IMMEDIATE, taking the workers' write lock."""

    def __init__(self, url: str, key: str, product_id: str, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.engine = make_engine(database_url)
        table = event_keys if self.engine.dialect.name == "postgresql" else events
        self.stored_ids = sa.select(table.c.message_id).where(
            table.c.product_id == product_id,
            table.c.message_id.in_(sa.bindparam("ids", expanding=True)),
        )
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        poller = threading.Thread(target=self._poll, daemon=True)
        poller.start()
        with httpx.Client(timeout=10) as client:
            while not self.stopping.wait(1 / PROBE_RATE):
                message_id = f"probe-{uuid.uuid4()}"
                body = {"userId": "probe", "event": "Probe", "messageId": message_id}
                sent = time.monotonic()
                try:
                    response = client.post(self.url, json=body, auth=(self.key, ""))
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    self.sent[message_id] = sent
        poller.join(30)

    def _poll(self) -> None:
        deadline = None
        while True:
            pending = list(self.sent)[:500]
            if pending:
                with read_connection(self.engine) as conn:  # SQLite: no write lock
                    found = conn.execute(self.stored_ids, {"ids": pending}).scalars()
                    now = time.monotonic()
                    for message_id in found:
                        self.latencies.append(now - self.sent.pop(message_id))
            if self.stopping.is_set():
                deadline = deadline or time.monotonic() + 20
                if not self.sent or time.monotonic() > deadline:
                    return
            time.sleep(0.05)

    def p99(self) -> float | None:
        if self.sent:  # never stored within the wait
            return None
        ordered = sorted(self.latencies)
        return ordered[int(0.99 * (len(ordered) - 1))] if ordered else None


def autocannon(url: str, key: str, rate: int, seconds: int) -> dict[str, Any]:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    result = subprocess.run(
        [
            "npx",
            "autocannon",
            "--json",
            "-R",
            str(rate),
            "-c",
            "64",
            "-d",
            str(seconds),
            "-m",
            "POST",
            "-H",
            "Content-Type=application/json",
            "-H",
            f"Authorization=Basic {auth}",
            "-b",
            BODY,
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return dict(json.loads(result.stdout))


def flushes(base: str) -> tuple[float, float]:
    """The collector's group-commit flushes so far: (envelopes, flushes), from /metrics."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(base + "/metrics", timeout=5).text.splitlines():
        for part in totals:
            if line.startswith(f"sightline_flush_batch_size_{part} "):
                totals[part] += float(line.split()[-1])
    return totals["sum"], totals["count"]


def step(
    base: str,
    up_pid: int,
    product: dict[str, Any],
    rate: int,
    seconds: int,
    redis: Redis,
    queue: str,
    database_url: str,
) -> dict[str, Any]:
    key = product["write_keys"][0]
    samples: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1):
            samples.append(backlog(redis, queue))

    sampler = threading.Thread(target=sample, daemon=True)
    probe = Probe(base + "/v1/track", key, product["id"], database_url)
    sampler.start()
    probe.start()
    envelopes_before, flushes_before = flushes(base)
    cpu_before, generator_before = (
        cpu_by_process(up_pid),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    load = autocannon(base + "/v1/track", key, rate, seconds)
    cpu_after, generator_after = (
        cpu_by_process(up_pid),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    envelopes_after, flushes_after = flushes(base)
    sampling.set()
    probe.stopping.set()
    probe.join(60)
    sampler.join(5)
    achieved = load["requests"]["average"]
    early = samples[min(4, len(samples) - 1)] if samples else 0
    end = samples[-1] if samples else 0
    p99 = probe.p99()
    ok = load["non2xx"] == 0 and load["errors"] == 0 and load["timeouts"] == 0
    return {
        "target_rps": rate,
        "achieved_rps": round(achieved),
        "non_2xx": load["non2xx"],
        "errors": load["errors"] + load["timeouts"],
        "envelopes_per_job": round(
            (envelopes_after - envelopes_before) / max(1.0, flushes_after - flushes_before), 1
        ),
        "cpu_us_per_request": cpu_per_request(
            cpu_before, cpu_after, generator_before, generator_after, load["requests"]["total"]
        ),
        "backlog_after_5s": early,
        "backlog_at_end": end,
        "probe_p99_s": None if p99 is None else round(p99, 3),
        "sustained": ok
        and achieved >= DELIVERED * rate
        and end <= early + rate
        and p99 is not None
        and p99 < 1.0,
    }


def cpu_per_request(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    generator_before: resource.struct_rusage,
    generator_after: resource.struct_rusage,
    requests: int,
) -> dict[str, float]:
    """Each part's CPU per request sent during a step (the load generator's too: autocannon
    runs on the same cores), their total, and the rate at which that total would fill
    every core of the machine: what this machine can sustain at these costs. A process
    that ended meanwhile is not counted (its last seconds are unknown)."""
    used = dict.fromkeys(("collector", "workers", "redis", "postgresql"), 0.0)
    for pid, (role, seconds) in after.items():
        used[role] += seconds - before.get(pid, (role, 0.0))[1]
    used["load_generator"] = (generator_after.ru_utime + generator_after.ru_stime) - (
        generator_before.ru_utime + generator_before.ru_stime
    )
    per_request = {role: seconds / max(requests, 1) * 1e6 for role, seconds in used.items()}
    total = sum(per_request.values())
    cores = os.cpu_count() or 1
    return {
        **{role: round(us, 1) for role, us in per_request.items()},
        "total": round(total, 1),
        "cores_full_at_rps": round(cores / total * 1e6) if total else 0,
    }


def drain(redis: Redis, queue: str, timeout: float = 300, interval: float = 0.5) -> None:
    """Wait until the backlog is empty (at most ``timeout``), looking every ``interval``."""
    deadline = time.monotonic() + timeout
    while backlog(redis, queue) > 0 and time.monotonic() < deadline:
        time.sleep(interval)


def drain_rate(redis: Redis, queue: str, timeout: float = 600) -> tuple[float, int]:
    """Drain the backlog, timed from the first event the workers store to the last:
    (events stored per second, how many)."""
    key = counter_key(queue, Counter.STORED)

    def stored() -> int:
        return int(redis.get(key) or 0)

    deadline = time.monotonic() + timeout
    before = stored()
    while stored() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    first, started = stored(), time.monotonic()
    drain(redis, queue, deadline - started, interval=0.05)
    count = stored() - first
    return count / max(time.monotonic() - started, 1e-9), count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in the data dir")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument(
        "--fractions",
        default="0.05,0.1,0.2,0.3,0.45,0.6,0.8,1.0",
        help="the rates tried, as fractions of the collector-alone rate, in order",
    )
    parser.add_argument(
        "--drain-only",
        action="store_true",
        help="only the collector alone and the workers' drain of what it accepted",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=2,
        help="bisections between the last rate sustained and the first not sustained",
    )
    args = parser.parse_args()
    for tool in ("wrk", "npx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install wrk; npm ci)")

    with tempfile.TemporaryDirectory(prefix="sightline-e2e-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env["SIGHTLINE_DATA_DIR"] = str(data_dir)
        if args.database_url:
            env["DATABASE_URL"] = args.database_url  # an empty database: it is migrated here
        subprocess.run(
            [sys.executable, "-m", "sightline", "migrate"], env=env, check=True, capture_output=True
        )
        created = subprocess.run(
            [sys.executable, "-m", "sightline", "products", "create", "bench", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        product = json.loads(created.stdout)
        key = product["write_keys"][0]
        database_url = args.database_url or f"sqlite:///{data_dir / 'sightline.db'}"

        # 1. The collector alone: what can be acknowledged at most.
        port = free_port()
        alone = start(data_dir, ["collector"], env, port)
        script = Path(tmp) / "post.lua"
        script.write_text(LUA % base64.b64encode(f"{key}:".encode()).decode())
        try:
            wrk(port, script, 2, 64)
            collector_alone = wrk(port, script, 10, 64)["rps"]
        finally:
            stop(alone)

        # 2. The system, at increasing constant rates.
        up = start(data_dir, ["up", "--workers", str(args.workers)], env, port)
        redis = Redis(unix_socket_path=str(data_dir / "redis.sock"))
        queue = "sightline"
        steps = []
        try:
            # What the collector alone accepted, stored by the workers: their rate on the
            # same events as the collector's, in jobs of its natural size.
            drained, drained_events = drain_rate(redis, queue)

            def run(rate: int) -> dict[str, Any]:
                result = step(
                    f"http://127.0.0.1:{port}",
                    up.pid,
                    product,
                    rate,
                    args.seconds,
                    redis,
                    queue,
                    database_url,
                )
                steps.append(result)
                drain(redis, queue)
                return result

            last_sustained = 0
            fractions = [] if args.drain_only else args.fractions.split(",")
            for fraction in (float(f) for f in fractions):
                rate = max(100, int(collector_alone * fraction))
                if not run(rate)["sustained"]:
                    failed = rate
                    for _ in range(args.refine if last_sustained else 0):
                        middle = (last_sustained + failed) // 2
                        if run(middle)["sustained"]:
                            last_sustained = middle
                        else:
                            failed = middle
                    break
                last_sustained = rate
        finally:
            redis.close()
            stop(up)
        sustained = [s["achieved_rps"] for s in steps if s["sustained"]]
        best = max(sustained, default=0)
        print(
            json.dumps(
                {
                    "bench": "e2e",
                    "database": "postgresql" if args.database_url else "sqlite",
                    "workers": args.workers or os.cpu_count(),
                    "seconds_per_step": args.seconds,
                    "collector_alone_rps": round(collector_alone),
                    "workers_drain_events_per_s": round(drained),
                    "workers_drained_events": drained_events,
                    "drain_ratio_to_collector_alone": round(drained / collector_alone, 3),
                    "steps": steps,
                    "highest_sustained_rps": best,
                    "ratio_to_collector_alone": round(best / collector_alone, 3),
                    "goal": {"ratio_to_collector_alone": 0.8},
                }
            )
        )


if __name__ == "__main__":
    main()
