"""Exports: NDJSON and CSV over the API and the CLI, spreadsheet-safe cells, and 200,000
rows streamed in constant memory on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from sightline.export import chunks, safe_cell
from sightline.store.reads import EventQuery, iter_events
from sightline.store.schema import events
from tests.api.support import bearer, token, track
from tests.cli.test_cli import run
from tests.harness import System


def test_formula_cells_are_prefixed() -> None:
    for dangerous in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(dangerous) == "'" + dangerous
    assert safe_cell("plain") == "plain" and safe_cell("") == ""


def test_csv_over_the_api_never_runs_a_formula(system: System) -> None:
    track(system, '=HYPERLINK("http://evil")', userId="@admin", anonymousId="-5")
    track(system, "Fine")
    system.work()
    key = token(system, system.product.id)
    r = system.client.get("/api/v1/events/export", params={"format": "csv"}, headers=bearer(key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["name"] for row in rows] == ["Fine", '\'=HYPERLINK("http://evil")']
    assert rows[1]["user_id"] == "'@admin" and rows[1]["anonymous_id"] == "'-5"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert json.loads(rows[0]["properties"]) == {}


def test_ndjson_over_the_api_and_the_cli(system: System) -> None:
    track(system, "Old", timestamp="2026-01-01T00:00:00Z")
    track(system, "New", timestamp="2026-06-01T00:00:00Z")
    system.work()
    key = token(system, system.product.id)
    r = system.client.get(
        "/api/v1/events/export", params={"from": "2026-03-01T00:00:00Z"}, headers=bearer(key)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line)["name"] for line in r.text.splitlines()] == ["New"]
    assert (
        system.client.get(
            "/api/v1/events/export", params={"format": "xml"}, headers=bearer(key)
        ).status_code
        == 400
    )
    out = run(system, "events", "export", "--product", system.product.id)
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["New", "Old"]
    out = run(system, "events", "export", "--format", "csv", "--to", "2026-03-01")
    assert [row["name"] for row in csv.DictReader(io.StringIO(out))] == ["Old"]


ROWS = 200_000


def _fill(system: System, count: int) -> None:
    """``count`` events straight into the table, many sharing a timestamp (keyset ties)."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, count, 10_000):
        with system.engine.begin() as conn:
            conn.execute(
                sa.insert(events),
                [
                    {
                        "id": f"{i:036d}",
                        "product_id": system.product.id,
                        "message_id": f"m{i}",
                        "name": "Row",
                        "type": "track",
                        "timestamp": base + timedelta(seconds=i // 7),
                        "received_at": base,
                        "user_id": f"u{i % 1000}",
                        "properties": {"i": i, "text": "x" * 200},
                        "context": {},
                        "dialect": "native",
                        "is_bot": False,
                        "is_unused": False,
                    }
                    for i in range(start, min(count, start + 10_000))
                ],
            )


def _rss_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * resource.getpagesize() / 2**20


def test_200k_rows_stream_in_constant_memory(system: System) -> None:
    started = time.monotonic()
    _fill(system, ROWS)
    filled = time.monotonic() - started
    query = EventQuery(product_id=system.product.id)
    baseline = _rss_mib()
    growth = 0.0
    rows = size = 0
    last = b""
    started = time.monotonic()
    for number, chunk in enumerate(chunks(iter_events(system.engine, query), "csv")):
        rows += chunk.count(b"\r\n")
        size += len(chunk)
        last = chunk  # hold nothing but the chunk in hand
        if number % 20 == 0:
            growth = max(growth, _rss_mib() - baseline)
    elapsed = time.monotonic() - started
    assert rows == ROWS + 1  # and the header line
    assert f"{0:036d}".encode() in last  # newest first: the oldest comes last
    assert size > 60 * 2**20  # the export is ~75 MiB ...
    assert growth < 30, growth  # ... and its rows are never all in memory
    assert elapsed < 120, elapsed
    print(
        f"\n{ROWS} rows stored in {filled:.1f} s; exported ({size / 2**20:.0f} MiB) "
        f"in {elapsed:.1f} s, resident memory +{growth:.1f} MiB at most"
    )


def test_keyset_chunks_return_every_row_once(system: System) -> None:
    _fill(system, 5_003)
    ids = [e.id for e in iter_events(system.engine, EventQuery(), chunk=100)]
    assert len(ids) == len(set(ids)) == 5_003
    assert ids == sorted(ids, reverse=True)
