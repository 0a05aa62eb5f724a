"""A job's data is compressed once, by the collector, and read back by RQ as it was."""

from __future__ import annotations

import zlib

from redis import Redis
from rq.job import Job as RQJob

from sightline.queue import COMPRESSION_LEVEL, Job, make_queue
from sightline.serializer import JSONSerializer
from tests.jobs import JobWriter

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
