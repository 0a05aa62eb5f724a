"""The adaptive linger under an open-loop load: job sizes, latency and CPU per request.

    python bench/linger.py [--lingers 0,2,5] [--rates 50,500,2000,5000] [--seconds 4]

Drives the collector app in-process (uvloop, real Redis from the embedded defaults,
real group commits, as bench/collector_cpu.py does) with independent requests that
arrive at random (Poisson) at each rate, each one a single-event ``POST /v1/track``
that does not wait for the one before: the traffic of many browsers, unlike wrk's
closed loop. For each linger ceiling (``SIGHTLINE_FLUSH_LINGER_MS``) and rate it
reports the envelopes per RQ job, the p50 / p99 of the time to acknowledge, and the
process's CPU per request. Ratios are against the linger of 0 at the same rate: job
size (goal: grows with the rate) and p50 at the lowest rate (goal: unchanged, a lone
event is acknowledged without waiting). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.collector_cpu import one_request, with_lifespan
from collector.app import create_app
from collector.metrics import Metrics
from sightline.embedded import EmbeddedRedis
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.products import create_product


def flushes(metrics: Metrics) -> tuple[float, float]:
    """(envelopes, flushes) so far, from the collector's own histogram."""
    total = count = 0.0
    for family in metrics.flush_size.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return total, count


async def open_loop(
    state: dict[str, Any], app: Any, key: str, rate: float, seconds: float
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def request() -> None:
        started = time.perf_counter()  # uvloop's clock counts whole milliseconds
        status = await one_request(app, key, state)
        if status not in (200, 204):
            raise RuntimeError(f"status {status}")
        latencies.append(time.perf_counter() - started)

    envelopes, jobs = flushes(state["metrics"])
    cpu = time.process_time()
    end = loop.time() + seconds
    due = loop.time()
    while due < end:
        due += rng.expovariate(rate)
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(request()))
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu
    envelopes_after, jobs_after = flushes(state["metrics"])
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "achieved_rps": round(n / seconds),
        "envelopes_per_job": round((envelopes_after - envelopes) / max(1.0, jobs_after - jobs), 2),
        "p50_ms": round(latencies[n // 2] * 1000, 3),
        "p99_ms": round(latencies[int(0.99 * (n - 1))] * 1000, 3),
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lingers", default="0,2,5", help="ceilings, in milliseconds")
    parser.add_argument("--rates", default="50,500,2000,5000", help="requests a second")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    lingers = [float(x) for x in args.lingers.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp,
        EmbeddedRedis(Path(tmp)) as redis,
    ):
        base = Settings(
            data_dir=Path(tmp), redis_url=redis.url, database_url=f"sqlite:///{tmp}/bench.db"
        )
        engine = make_engine(base.sqlalchemy_url)
        upgrade(engine)
        with engine.begin() as conn:
            key = create_product(conn, "bench").write_keys[0]
        engine.dispose()
        for linger in lingers:
            app = create_app(dataclasses.replace(base, flush_linger_ms=linger))

            async def run(state: dict[str, Any], app: Any = app) -> dict[str, Any]:
                await open_loop(state, app, key, rates[-1], 1.0)  # warm-up
                return {
                    str(int(rate)): await open_loop(state, app, key, rate, args.seconds)
                    for rate in rates
                }

            results[str(linger)] = uvloop.run(with_lifespan(app, run))
    off, low = str(lingers[0]), str(int(rates[0]))
    print(
        json.dumps(
            {
                "bench": "linger",
                "seconds_per_rate": args.seconds,
                "results": results,
                "job_size_ratio_to_linger_off": {
                    linger: {
                        rate: round(
                            r["envelopes_per_job"] / results[off][rate]["envelopes_per_job"], 2
                        )
                        for rate, r in by_rate.items()
                    }
                    for linger, by_rate in results.items()
                },
                "p50_ratio_at_lowest_rate": {
                    linger: round(by_rate[low]["p50_ms"] / results[off][low]["p50_ms"], 2)
                    for linger, by_rate in results.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
