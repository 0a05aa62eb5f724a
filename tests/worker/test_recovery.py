"""Jobs stranded in RQ's intermediate list are requeued within seconds (issue 14, finding 3).

A worker moves a job from the queue to ``rq:queue:<name>:intermediate``, then into the
StartedJobRegistry. Killed between the two, it leaves the job where RQ's own
maintenance finds it only ~11 minutes later; here the job is LMOVEd by hand, as the
dying worker would have, against a real Redis.
"""

from __future__ import annotations

import time

import pytest
from rq import SimpleWorker
from rq.executions import prepare_execution
from rq.job import Job, JobStatus

from sightline.queue import make_queue
from sightline.redis_keys import workers_key
from sightline.serializer import JSONSerializer
from tests.harness import System
from worker.recovery import Recovery


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_stranded_in_the_intermediate_list_is_stored(system: System) -> None:
    response = system.send("/v1/track", {"userId": "u", "event": "Stranded", "messageId": "s-1"})
    assert response.status_code == 200
    queue = make_queue(system.redis, system.settings.queue_name)
    moved = system.redis.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")
    assert moved is not None and queue.count == 0  # the dying worker took it, and died

    recovery = Recovery(system.redis, queue, "survivor", ttl=0.3)
    assert recovery.sweep() == []  # first seen: it may be a live worker's, mid-move
    time.sleep(0.35)
    assert recovery.sweep() == [moved.decode()]
    assert system.redis.llen(queue.intermediate_queue_key) == 0
    assert recovery.sweep() == []  # claimed once

    system.work()
    assert [e.name for e in system.events()] == ["Stranded"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_a_live_worker_is_moving_is_left_alone(system: System) -> None:
    system.send("/v1/track", {"userId": "u", "event": "Moving"})
    queue = make_queue(system.redis, system.settings.queue_name)
    system.redis.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")
    recovery = Recovery(system.redis, queue, "survivor", ttl=60)
    assert recovery.sweep() == []
    assert recovery.sweep() == []  # seen twice, but not ttl apart
    assert system.redis.llen(queue.intermediate_queue_key) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_registered_as_started_but_never_marked_is_stored(system: System) -> None:
    """Redis killed between RQ's two steps of taking a job: the started registry has it
    (with the execution's worker), the job itself still says ``queued`` with no worker,
    and it is still on the intermediate list. Its worker is gone."""
    response = system.send("/v1/track", {"userId": "u", "event": "Half", "messageId": "h-1"})
    assert response.status_code == 200
    queue = make_queue(system.redis, system.settings.queue_name)
    moved = system.redis.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")
    assert moved is not None
    dead = SimpleWorker([queue], connection=system.redis, name="dead-worker")
    job = Job.fetch(moved.decode(), connection=system.redis, serializer=JSONSerializer)
    prepare_execution(dead, job)  # RQ's first step; the second (the job's status) never ran
    system.redis.sadd(workers_key(queue.name), "dead-worker")  # a Sightline worker, not alive
    assert job.get_status() == JobStatus.QUEUED and moved.decode() in queue.started_job_registry

    recovery = Recovery(system.redis, queue, "survivor", ttl=0.3)
    assert recovery.sweep() == [moved.decode()]
    assert system.redis.llen(queue.intermediate_queue_key) == 0
    assert queue.started_job_registry.count == 0
    assert queue.get_job_ids() == [moved.decode()]
    time.sleep(0.35)
    assert recovery.sweep() == []  # requeued once, not again from the intermediate list

    system.work()
    assert [e.name for e in system.events()] == ["Half"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_leaving_with_a_job_in_hand_stays_registered(system: System) -> None:
    """RQ quits on an error it cannot handle (Redis gone mid-job) with the job in the
    started registry: the worker stays in the set, so the others' sweep requeues it."""
    system.send("/v1/track", {"userId": "u", "event": "Held", "messageId": "held-1"})
    queue = make_queue(system.redis, system.settings.queue_name)
    [job_id] = queue.get_job_ids()
    leaving = Recovery(system.redis, queue, "leaving", ttl=0.3)
    leaving.start()
    worker = SimpleWorker([queue], connection=system.redis, name="leaving")
    job = queue.fetch_job(job_id)
    assert job is not None
    queue.remove(job)
    prepare_execution(worker, job)
    worker.prepare_job_execution(job)
    leaving.stop()
    assert system.redis.sismember(workers_key(queue.name), "leaving")

    assert Recovery(system.redis, queue, "survivor", ttl=0.3).sweep() == [job_id]
    assert not system.redis.sismember(workers_key(queue.name), "leaving")
    system.work()
    assert [e.name for e in system.events()] == ["Held"]

    idle = Recovery(system.redis, queue, "idle", ttl=0.3)
    idle.start()
    idle.stop()
    assert not system.redis.sismember(workers_key(queue.name), "idle")
