"""Collector throughput against a plain Starlette route, measured in the same run.

    python bench/collector.py [--seconds 10] [--connections 64]
    python bench/collector.py --seconds 600    # the soak: is the collector's RSS flat?

Runs wrk (Debian package ``wrk``) on loopback, single-event ``POST /v1/track``, first
against bench/plain_app.py (a route answering 204), then against the real collector (one
uvicorn process each, real Redis with the embedded defaults: AOF, fsync every second).
Both run under the HTTP protocol ``sightline up`` serves with
(``collector.server.BoundedHttpToolsProtocol``: uvicorn's httptools with head limits,
read timeouts and one write per answer); the plain route also runs under uvicorn's own
httptools protocol (``plain_stock_*``, ``ratio_to_stock``), the baseline as it was
before the collector's protocol was measured with it. Then it counts the events inside
the RQ jobs in Redis: every 2xx must be there; the excess is at most the requests wrk
abandoned in flight when it stopped (one per connection). The collector's resident
memory is sampled every second of the measured run (``/proc/PID/status``): its peak, its
value at the half and at the end (goal: under 200 MB and flat: the second half adds
under 5 %). The CPU time each server process spent in the measured run (user + system,
from ``/proc/PID/stat``) per request is printed too: on a shared machine the rates move
with the load, the CPU per request much less. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis import Redis
from rq.job import Job

from bench.procfs import process_times
from sightline.embedded import EmbeddedRedis
from sightline.queue import make_queue
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.products import create_product

ROOT = Path(__file__).resolve().parent.parent
LUA = """
wrk.method = "POST"
wrk.body = '{"userId":"user-1","event":"Bench Event","properties":{"plan":"pro","seats":3}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %s"
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROTOCOL = "collector.server:BoundedHttpToolsProtocol"
"""What ``sightline up`` and ``sightline collector`` serve with (``sightline.up``)."""


def serve(
    app: str, port: int, env: dict[str, str], factory: bool = False, http: str = PROTOCOL
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--http",
        http,
    ]
    if factory:
        args.append("--factory")
    process = subprocess.Popen(args, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/track",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout

    def number(pattern: str, default: float | None = None) -> float:
        match = re.search(pattern, out)
        if match is None:
            if default is None:
                raise RuntimeError(f"no {pattern!r} in wrk output:\n{out}")
            return default
        return float(match.group(1))

    def millis(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            raise RuntimeError(f"no {label} latency in wrk output:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = number(r"(\d+) requests in")
    non2xx = number(r"Non-2xx or 3xx responses: (\d+)", 0)
    errors = sum(float(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": requests,
        "ok": requests - non2xx,
        "non_2xx": non2xx,
        "socket_errors": errors,
        "p50_ms": millis("50%"),
        "p99_ms": millis("99%"),
    }


class RssSampler:
    """The resident memory of one process, sampled every second on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(self.rss_mb())

    def __enter__(self) -> RssSampler:
        self.samples.append(self.rss_mb())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.rss_mb())

    def summary(self) -> dict[str, float | bool]:
        half, end = self.samples[len(self.samples) // 2], self.samples[-1]
        growth = (end - half) / half
        return {
            "rss_start_mb": round(self.samples[0], 1),
            "rss_half_mb": round(half, 1),
            "rss_end_mb": round(end, 1),
            "rss_max_mb": round(max(self.samples), 1),
            "rss_second_half_growth": round(growth, 3),
            "rss_goal_met": max(self.samples) < 200 and growth < 0.05,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    times = process_times(pid)
    if times is None:
        raise ProcessLookupError(pid)
    return times.own


def events_in_jobs(redis: Redis, queue_name: str) -> tuple[int, int]:
    queue = make_queue(redis, queue_name)
    ids = queue.get_job_ids()
    events = 0
    for start in range(0, len(ids), 500):
        for job in Job.fetch_many(
            ids[start : start + 500], connection=redis, serializer=queue.serializer
        ):
            if job is not None:
                events += len(job.args[0])
    return events, len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")

    with (
        tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp,
        EmbeddedRedis(Path(tmp)) as embedded,
    ):
        settings = Settings(
            data_dir=Path(tmp), redis_url=embedded.url, database_url=f"sqlite:///{tmp}/bench.db"
        )
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        with engine.begin() as conn:
            key = create_product(conn, "bench").write_keys[0]
        engine.dispose()
        script = Path(tmp) / "post.lua"
        script.write_text(LUA % base64.b64encode(f"{key}:".encode()).decode())
        env = dict(os.environ) | {
            "REDIS_URL": embedded.url,
            "DATABASE_URL": settings.sqlalchemy_url,
        }

        results = {}
        cpu_us: dict[str, float] = {}
        rss: dict[str, float | bool] = {}
        for name, app, factory, http in (
            ("plain_stock", "bench.plain_app:app", False, "httptools"),
            ("plain", "bench.plain_app:app", False, PROTOCOL),
            ("collector", "collector.app:create_app", True, PROTOCOL),
        ):
            port = free_port()
            process = serve(app, port, env, factory, http)
            try:
                wrk(port, script, 2, args.connections)  # warm-up, not counted
                time.sleep(1)  # the warm-up's abandoned requests finish (and are enqueued)
                if name == "collector":
                    Redis.from_url(embedded.url).flushdb()
                cpu = cpu_seconds(process.pid)
                with RssSampler(process.pid) as sampler:
                    results[name] = wrk(port, script, args.seconds, args.connections)
                cpu = cpu_seconds(process.pid) - cpu
                cpu_us[name] = cpu * 1e6 / results[name]["requests"]
                if name == "collector":
                    rss = sampler.summary()
                time.sleep(1)  # so do the measured run's
            finally:
                process.terminate()
                process.wait(30)

        redis = Redis.from_url(embedded.url)
        in_jobs, jobs = events_in_jobs(redis, settings.queue_name)
        stock, plain, real = results["plain_stock"], results["plain"], results["collector"]
        print(
            json.dumps(
                {
                    "bench": "collector",
                    "connections": args.connections,
                    "seconds": args.seconds,
                    "plain_rps": round(plain["rps"]),
                    "collector_rps": round(real["rps"]),
                    "ratio": round(real["rps"] / plain["rps"], 3),
                    "plain_stock_rps": round(stock["rps"]),
                    "ratio_to_stock": round(real["rps"] / stock["rps"], 3),
                    "plain_cpu_us_per_request": round(cpu_us["plain"], 1),
                    "collector_cpu_us_per_request": round(cpu_us["collector"], 1),
                    "cpu_ratio": round(cpu_us["plain"] / cpu_us["collector"], 3),
                    "plain_stock_cpu_us_per_request": round(cpu_us["plain_stock"], 1),
                    "cpu_ratio_to_stock": round(cpu_us["plain_stock"] / cpu_us["collector"], 3),
                    "plain_p50_ms": plain["p50_ms"],
                    "plain_p99_ms": plain["p99_ms"],
                    "collector_p50_ms": real["p50_ms"],
                    "collector_p99_ms": real["p99_ms"],
                    "collector_2xx": int(real["ok"]),
                    "collector_non_2xx": int(real["non_2xx"]),
                    "socket_errors": int(real["socket_errors"]),
                    "events_in_redis": in_jobs,
                    "jobs_in_redis": jobs,
                    "mean_events_per_job": round(in_jobs / jobs, 1) if jobs else 0,
                    # wrk stops with up to one request per connection in flight: those
                    # reached Redis but their 2xx was never counted. A lost event
                    # would make this negative.
                    "events_in_redis_minus_2xx": in_jobs - int(real["ok"]),
                    "no_2xx_lost": 0 <= in_jobs - int(real["ok"]) <= args.connections,
                    **{f"collector_{k}": v for k, v in rss.items()},
                    "goal": {"ratio": 0.5, "collector_rss_max_mb": 200},
                }
            )
        )


if __name__ == "__main__":
    main()
