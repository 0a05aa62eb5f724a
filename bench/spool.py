"""What the spool (SIGHTLINE_SPOOL) costs, and what a collector does while Redis is away.

    python bench/spool.py [--seconds 10] [--connections 64] [--rounds 2]

One redis-server (append-only, fsync every second: the embedded defaults) on a TCP
port; wrk on loopback, single-event ``POST /v1/track``, against one uvicorn collector
process per run:

- ``off`` and ``on``, ``--rounds`` of each in a balanced order (``on off off on``): the
  spool off, then on, Redis up (``on`` should cost nothing: the spool is only touched
  when a flush fails); their median rates are compared;
- ``spooling``: the last ``on`` collector again, Redis SIGKILLed before wrk starts:
  every flush is appended to the spool file and fsynced before its requests are answered.

Before those, the same comparison in process: CPU per request of the collector app with
the spool off and on (``bench/collector_cpu.py``'s driver, no HTTP, 64 at a time).

Then Redis is restarted and the time until the spool is drained is measured; the events
inside the RQ jobs are counted against the 2xx of the last ``on`` run and the spooling run
(wrk abandons up to one request per connection in flight at its end: those may be in
Redis without a counted 2xx). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvloop
from redis import Redis
from redis.exceptions import RedisError

from bench.collector import LUA, events_in_jobs, free_port, serve, wrk
from bench.collector_cpu import measure
from collector.app import create_app
from sightline.embedded import redis_server_binary
from sightline.settings import DEFAULT_QUEUE, Settings
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.products import create_product


def start_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    command = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--dir", str(directory), "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "everysec"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Redis(port=port, socket_timeout=0.5).ping():
                return process
        except RedisError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (medians compared)")
    parser.add_argument("--cpu-rounds", type=int, default=200, help="in-process: 64 requests each")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")

    with tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp:
        root = Path(tmp)
        redis_port = free_port()
        redis_dir = root / "redis"
        redis_dir.mkdir()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        redis_process = start_redis(redis_dir, redis_port)
        database_url = f"sqlite:///{root}/bench.db"
        engine = make_engine(database_url)
        upgrade(engine)
        with engine.begin() as conn:
            key = create_product(conn, "bench").write_keys[0]
        engine.dispose()
        script = root / "post.lua"
        script.write_text(LUA % base64.b64encode(f"{key}:".encode()).decode())
        spool_dir = root / "spool"
        env = dict(os.environ) | {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_DATA_DIR": str(root),
            "SIGHTLINE_SPOOL_MAX_BYTES": str(4 << 30),
        }
        redis = Redis.from_url(redis_url)
        rounds: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        try:
            # CPU per request in process (bench/collector_cpu.py's driver, no HTTP): the
            # machine's noise weighs less on it than on wrk's rate.
            settings = Settings(data_dir=root, redis_url=redis_url, database_url=database_url)
            for mode in ("off", "on", "on", "off") * args.rounds:
                app = create_app(settings.with_changes(spool=mode))
                result = uvloop.run(measure(app, key, args.cpu_rounds, 64))
                cpu[mode].append(result["cpu_us_per_request"])
            # off and on in a balanced order (on off off on: a drift of the shared machine's
            # speed within the run, or Redis's growing append-only file, weighs on both);
            # the last collector, "on", stays up for the outage.
            order: list[str] = []
            for i in range(args.rounds):
                order = (["off", "on"] if i % 2 == 0 else ["on", "off"]) + order
            for n, mode in enumerate(order):
                last = n == len(order) - 1
                port = free_port()
                spool = "off" if mode == "off" else str(spool_dir)
                process = serve(
                    "collector.app:create_app", port, env | {"SIGHTLINE_SPOOL": spool}, True
                )
                try:
                    wrk(port, script, 2, args.connections)  # warm-up, not counted
                    time.sleep(1)  # its abandoned in-flight requests finish
                    redis.flushdb()  # in the last round, every 2xx from here on is counted
                    rounds[mode].append(wrk(port, script, args.seconds, args.connections))
                    if not last:
                        continue
                    time.sleep(1)
                    redis_process.kill()
                    redis_process.wait(10)
                    down = wrk(port, script, args.seconds, args.connections)
                    time.sleep(1)
                    spooled = metric(port, "sightline_spool_events_spooled_total")
                    spool_bytes = metric(port, "sightline_spool_bytes")
                    restarted = time.monotonic()
                    redis_process = start_redis(redis_dir, redis_port)
                    while metric(port, "sightline_spool_bytes") > 0:
                        if time.monotonic() - restarted > 600:
                            raise RuntimeError("the spool was not drained within 600 s")
                        time.sleep(0.05)
                    drain_seconds = time.monotonic() - restarted
                    drained = metric(port, "sightline_spool_events_drained_total")
                finally:
                    process.terminate()
                    process.wait(30)
            in_jobs, jobs = events_in_jobs(redis, DEFAULT_QUEUE)
        finally:
            redis.close()
            redis_process.kill()
            redis_process.wait(10)

    def median(mode: str) -> float:
        return statistics.median(r["rps"] for r in rounds[mode])

    off_rps, on_rps = median("off"), median("on")
    acknowledged = int(rounds["on"][-1]["ok"] + down["ok"])
    print(
        json.dumps(
            {
                "bench": "spool",
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "cpu_us_off": round(statistics.median(cpu["off"]), 1),
                "cpu_us_on": round(statistics.median(cpu["on"]), 1),
                "spool_off_rps": [round(r["rps"]) for r in rounds["off"]],
                "spool_on_rps": [round(r["rps"]) for r in rounds["on"]],
                "on_over_off": round(on_rps / off_rps, 3),
                "spooling_rps": round(down["rps"]),
                "spooling_over_off": round(down["rps"] / off_rps, 3),
                "off_p99_ms": [r["p99_ms"] for r in rounds["off"]],
                "on_p99_ms": [r["p99_ms"] for r in rounds["on"]],
                "spooling_p50_ms": down["p50_ms"],
                "spooling_p99_ms": down["p99_ms"],
                "spooling_2xx": int(down["ok"]),
                "spooling_non_2xx": int(down["non_2xx"]),
                "socket_errors": int(rounds["on"][-1]["socket_errors"] + down["socket_errors"]),
                "events_spooled": int(spooled),
                "spool_bytes": int(spool_bytes),
                "events_drained": int(drained),
                "drain_seconds": round(drain_seconds, 2),
                "drain_events_per_s": round(drained / drain_seconds) if drain_seconds else None,
                "events_in_redis": in_jobs,
                "jobs_in_redis": jobs,
                "events_in_redis_minus_2xx": in_jobs - acknowledged,
                # wrk abandons up to one request per connection per phase (2 phases).
                "no_2xx_lost": 0 <= in_jobs - acknowledged <= 2 * args.connections,
            }
        )
    )


if __name__ == "__main__":
    main()
