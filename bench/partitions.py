"""The cost of partitioned events on PostgreSQL, measured in the same run.

    python bench/partitions.py --postgres-url postgresql+psycopg://user@host/postgres \\
        [--batches 400] [--batch-size 64] [--preload 0] [--convert-rows 200000]

``--postgres-url`` names a server's maintenance database: the run creates fresh
databases beside it. Three figures, each printed in one JSON line:

- the worker's event write (``COPY`` into the stage, then one ``INSERT ... SELECT``)
  into the unpartitioned table of revision 0008 (dedup: its unique index) and into
  the partitioned one (dedup: ``event_keys`` first), batch by batch in turn, so both
  see the same machine, after ``--preload`` events were stored in each (larger
  indexes, as a database that has run a while holds);
- the same batches again (every event a duplicate);
- migration 0009 converting a populated table of ``--convert-rows`` events.

Rows are synthetic (realistic widths: a few properties, a browser context, the stats
columns), dated over the last 90 days so batches cross month partitions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from sightline.ids import uuid7
from sightline.store.columns import EVENT_COLUMNS as _EVENT_COLUMNS
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.writer import _PG_COPY_TEXT, _PG_CREATE_STAGE, _PG_MERGE

OLD_MERGE = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
    f"SELECT {', '.join(_EVENT_COLUMNS)} FROM sightline_events_in "
    "ON CONFLICT (product_id, message_id) DO NOTHING RETURNING product_id, message_id"
)
"""The statement of revision 0008's writer (the unique index of events)."""


def rows(count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        when = now - timedelta(seconds=rng.randrange(90 * 86400))
        user = f"user-{rng.randrange(5000)}"
        page = f"/p/{rng.randrange(200)}"
        values: dict[str, Any] = {
            "id": uuid7(),
            "product_id": "pr_bench",
            "message_id": str(uuid.uuid4()),
            "name": rng.choice(("Viewed", "Clicked", "Signed up", "Bought")),
            "type": rng.choice(("page", "track")),
            "timestamp": when,
            "received_at": when,
            "sent_at": when,
            "original_timestamp": when,
            "user_id": user if rng.random() < 0.5 else None,
            "anonymous_id": f"anon-{user}",
            "properties": json.dumps({"path": page, "plan": "pro", "value": rng.random()}),
            "context": json.dumps(
                {
                    "ip": "81.2.69.0",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
                    "page": {"path": page, "url": f"https://shop.example{page}"},
                    "library": {"name": "sightline.js", "version": "1.0"},
                }
            ),
            "dialect": "native",
            "is_bot": False,
            "is_unused": False,
            "page_path": page,
            "referrer_host": "google.com",
            "channel": "search",
            "country": "GB",
            "browser": "Chrome",
            "os": "Linux",
            "device_type": "desktop",
        }
        out.append(tuple(values.get(c) for c in _EVENT_COLUMNS))
    return out


def database(server: str, name: str, revision: str) -> str:
    with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    upgrade(engine, revision)
    engine.dispose()
    return url


def writer(url: str, merge: str) -> Callable[[list[tuple[Any, ...]]], tuple[float, int]]:
    conn = psycopg.connect(url.replace("+psycopg", ""))

    def write(batch: list[tuple[Any, ...]]) -> tuple[float, int]:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(_PG_CREATE_STAGE)
            with cur.copy(_PG_COPY_TEXT) as copy:  # rows of JSON text
                for row in batch:
                    copy.write_row(row)
            cur.execute(merge)
            stored = len(cur.fetchall())
        conn.commit()
        return time.perf_counter() - started, stored

    return write


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preload", type=int, default=0)
    parser.add_argument("--convert-rows", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(12)
    tag = uuid.uuid4().hex[:8]

    plain = writer(database(args.postgres_url, f"bench_plain_{tag}", "0008"), OLD_MERGE)
    parted = writer(database(args.postgres_url, f"bench_parted_{tag}", "head"), _PG_MERGE)
    for _ in range(0, args.preload, 5000):
        chunk = rows(5000, rng)
        plain(chunk)
        parted(chunk)
    batches = [rows(args.batch_size, rng) for _ in range(args.batches)]
    for label in ("new", "duplicates"):
        seconds = {"unpartitioned": 0.0, "partitioned": 0.0}
        stored = {"unpartitioned": 0, "partitioned": 0}
        for i, batch in enumerate(batches):
            order = [("unpartitioned", plain), ("partitioned", parted)]
            for name, write in order if i % 2 else reversed(order):
                took, n = write(batch)
                seconds[name] += took
                stored[name] += n
        events = args.batches * args.batch_size
        rate = {name: round(events / s) for name, s in seconds.items()}
        print(
            json.dumps(
                {
                    "bench": "partitions_write",
                    "events": label,
                    "batch_size": args.batch_size,
                    "batches": args.batches,
                    "preloaded": args.preload,
                    "stored": stored,
                    "events_per_s": rate,
                    "ratio_partitioned": round(rate["partitioned"] / rate["unpartitioned"], 3),
                }
            ),
            flush=True,
        )

    url = database(args.postgres_url, f"bench_convert_{tag}", "0008")
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        load = rows(args.convert_rows, rng)
        into_events = _PG_COPY_TEXT.replace("sightline_events_in", "events")
        with conn.cursor() as cur, cur.copy(into_events) as c:
            for row in load:
                c.write_row(row)
        conn.commit()
    engine = make_engine(url)
    started = time.perf_counter()
    upgrade(engine)
    took = time.perf_counter() - started
    with engine.connect() as conn:
        partitions = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ).scalar()
    engine.dispose()
    print(
        json.dumps(
            {
                "bench": "partitions_migration",
                "rows": args.convert_rows,
                "partitions": partitions,
                "seconds": round(took, 2),
                "rows_per_s": round(args.convert_rows / took),
            }
        )
    )


if __name__ == "__main__":
    main()
