"""The worker's batch: idempotent, bad envelopes to dead letters, failures retried."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from sightline.queue import make_queue
from sightline.store.schema import users
from tests.harness import System
from tests.jobs import JobWriter
from worker.main import run_worker


def queued_envelopes(system: System) -> list[Any]:
    queue = make_queue(system.redis, system.settings.queue_name)
    [job_id] = queue.job_ids
    job = Job.fetch(job_id, connection=system.redis, serializer=queue.serializer)
    return list(job.args[0])


def queued_envelopes_all(system: System) -> list[Any]:
    """The envelopes of every queued job, in queue order."""
    queue = make_queue(system.redis, system.settings.queue_name)
    envelopes: list[Any] = []
    for job_id in queue.job_ids:
        job = Job.fetch(job_id, connection=system.redis, serializer=queue.serializer)
        envelopes.extend(job.args[0])
    return envelopes


def requeue(system: System, envelopes: list[Any]) -> None:
    writer = JobWriter(
        make_queue(system.redis, system.settings.queue_name), max_retries=1, job_timeout=60
    )
    writer.write(envelopes)


def test_a_job_run_twice_stores_nothing_twice(system: System) -> None:
    batch = [{"type": "track", "userId": f"u{i % 3}", "event": "E"} for i in range(9)]
    batch.append(
        {"type": "identify", "userId": "u0", "anonymousId": "a0", "traits": {"plan": "pro"}}
    )
    system.send("/v1/batch", {"batch": batch})
    envelopes = queued_envelopes(system)
    system.work()
    before = sorted((r.external_id, r.event_count) for r in system.sql(sa.select(users)))
    requeue(system, envelopes)
    system.work()
    after = sorted((r.external_id, r.event_count) for r in system.sql(sa.select(users)))
    assert len(system.events()) == 10
    assert after == before == [("u0", 4), ("u1", 3), ("u2", 3)]
    assert system.status().duplicates == 10


def forged(system: System, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "id": "env-1",
        "dialect": "native",
        "kind": "track",
        "product_id": system.product.id,
        "received_at": datetime.now(UTC).isoformat(),
        "body": {"userId": "u", "event": "Good"},
    }
    return base | changes


def test_bad_envelopes_become_dead_letters_and_the_rest_is_stored(system: System) -> None:
    requeue(
        system,
        [
            forged(system),
            forged(system, id="env-2", v=99),
            forged(system, id="env-3", dialect="klingon"),
            forged(system, id="env-4", body={"userId": "u"}),
            forged(system, id="env-5", product_id="prd_gone"),
            {"not": "an envelope"},
        ],
    )
    system.work()
    assert [e.name for e in system.events()] == ["Good"]
    reasons = sorted(d.reason for d in system.dead_letters())
    assert reasons == [
        "envelope",
        "envelope_version",
        "schema",
        "unknown_dialect",
        "unknown_product",
    ]
    assert system.status().dead_letters == 5
    by_reason = {d.reason: d for d in system.dead_letters()}
    assert "event" in by_reason["schema"].detail
    assert by_reason["unknown_product"].product_id == "prd_gone"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_down_retries_with_backoff_and_loses_nothing(
    system: System, tmp_path: Path
) -> None:
    system.send("/v1/track", {"userId": "u", "event": "Kept"})
    broken = system.settings.with_changes(
        database_url=f"sqlite:///{tmp_path}/no/such/dir/db.sqlite"
    )
    run_worker(broken, burst=True)
    scheduled = ScheduledJobRegistry(system.settings.queue_name, connection=system.redis)
    assert scheduled.count == 1, "the failed job is scheduled for a retry, not dropped"
    assert system.events() == []
    time.sleep(1.2)  # the first retry interval
    system.work()  # with the database back: the burst scheduler enqueues the due retry
    assert [e.name for e in system.events()] == ["Kept"]
