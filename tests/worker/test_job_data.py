"""A job's data is compressed once, by the collector, and read back by RQ as it was."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import pytest
from redis import Redis
from rq.job import Job as RQJob
from rq.utils import now, utcformat

from sightline.queue import COMPRESSION_LEVEL, Command, Job, JobBuilder, make_queue
from sightline.serializer import JSONSerializer
from tests.jobs import JobWriter, write_sync

ENVELOPES = [{"id": f"e{i}", "body": {"event": "E", "n": i}} for i in range(64)]


def test_a_job_is_stored_compressed_fast_and_saved_again_with_the_same_bytes(
    redis_url: str,
) -> None:
    redis = Redis.from_url(redis_url)
    queue = make_queue(redis, "jobdata")
    JobWriter(queue, max_retries=3, job_timeout=60).write(ENVELOPES)
    [job_id] = queue.job_ids
    stored = redis.hget(f"rq:job:{job_id}", "data")
    assert isinstance(stored, bytes)
    data = zlib.decompress(stored)
    assert stored == zlib.compress(data, COMPRESSION_LEVEL)

    # What a worker does: fetch, then save on success. The bytes are not compressed again.
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert list(job.args) == [ENVELOPES]
    assert isinstance(job, Job) and job._packed is not None
    assert job.to_dict()["data"] is job._packed[1]
    job.save()
    assert redis.hget(f"rq:job:{job_id}", "data") == stored

    # RQ's own job class reads it as any other, and what it saves reads back here.
    plain = RQJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert list(plain.args) == [ENVELOPES]
    plain.save()
    assert list(Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args) == [ENVELOPES]
    redis.close()


def test_changed_data_is_compressed_again(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    job = Job.create("worker.jobs.process_batch", args=([1],), connection=redis)
    job.serializer = JSONSerializer
    first = job.to_dict()["data"]
    job.args = ([2],)
    second = job.to_dict()["data"]
    assert first != second
    assert JSONSerializer.loads(zlib.decompress(second))[2] == [[2]]
    redis.close()


def test_no_retries_builds_jobs_without_a_retry(redis_url: str) -> None:
    """``SIGHTLINE_MAX_RETRIES=0`` is valid: the jobs are built (RQ refuses ``Retry(max=0)``)."""
    redis = Redis.from_url(redis_url)
    queue = make_queue(redis, "noretry")
    JobWriter(queue, max_retries=0, job_timeout=60).write(ENVELOPES[:1])
    [job_id] = queue.job_ids
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert not job.retries_left
    redis.close()


@pytest.mark.parametrize("max_retries", [0, 3])
def test_jobs_from_the_template_are_the_jobs_rq_builds(redis_url: str, max_retries: int) -> None:
    """After its first job, the builder fills a template of RQ's commands: each job it
    writes is stored exactly as RQ stores the same job (but for its id and times)."""
    redis = Redis.from_url(redis_url)
    queue = make_queue(redis, f"template{max_retries}")
    builder = JobBuilder(queue, max_retries=max_retries, job_timeout=60)
    for size in (1, 64, 3):
        before = utcformat(now())
        ours = builder.commands(ENVELOPES[:size])
        fields = ours[2][0]
        for time_field in ("created_at", "enqueued_at"):  # this job's times, not the sample's
            assert fields[fields.index(time_field) + 1] >= before
        assert builder._template is not None  # learnt, and it reproduced RQ's second job
        theirs, job = builder._rq_commands(ENVELOPES[:size])
        theirs.append((("INCRBY", builder.accepted_key, size), {}))
        [ours_id] = ours[3][0][2:]
        assert ours_id != job.id
        same = _with_id_and_times(ours, ours_id, job.id, job)
        assert same == theirs
        write_sync(redis, ours)
        assert queue.job_ids[-1] == ours_id
        fetched = Job.fetch(ours_id, connection=redis, serializer=JSONSerializer)
        assert list(fetched.args) == [ENVELOPES[:size]]
        assert fetched.retries_left == (max_retries or None)
        assert fetched.description == f"process_batch({size} envelopes)"
    redis.close()


def _with_id_and_times(commands: list[Command], old: str, new: str, job: RQJob) -> list[Command]:
    """``commands`` with job ``old``'s id (and key) and times made ``job``'s."""
    times = {"created_at": utcformat(job.created_at), "enqueued_at": utcformat(job.enqueued_at)}
    changed = []
    for args, options in commands:
        values = list(args)
        for j, value in enumerate(values):
            if isinstance(value, str) and old in value:
                values[j] = value.replace(old, new)
            elif j and values[j - 1] in times:
                values[j] = times[values[j - 1]]
        changed.append((tuple(values), options))
    return changed


def test_a_template_that_does_not_reproduce_rq_is_not_used(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should RQ's commands vary in a way the template does not know (here: a made-up
    field that differs per job), RQ builds every job."""
    redis = Redis.from_url(redis_url)
    queue = make_queue(redis, "notemplate")
    builder = JobBuilder(queue, max_retries=3, job_timeout=60)
    made = itertools.count()
    to_dict = Job.to_dict

    def varying(self: Job, include_meta: bool = True, include_result: bool = True) -> Any:
        return {**to_dict(self, include_meta, include_result), "serial": next(made)}

    monkeypatch.setattr(Job, "to_dict", varying)
    commands = builder.commands(ENVELOPES[:2])
    assert builder._template is None
    assert commands[2][0][-2:] == ("serial", 2)  # built by RQ (after its two samples)
    write_sync(redis, commands)
    [job_id] = queue.job_ids
    assert list(Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args) == [
        ENVELOPES[:2]
    ]
    redis.close()
