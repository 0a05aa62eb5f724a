"""Jobs stranded in RQ's intermediate list are requeued within seconds (issue 14, finding 3).

A worker moves a job from the queue to ``rq:queue:<name>:intermediate``, then into the
StartedJobRegistry. Killed between the two, it leaves the job where RQ's own
maintenance finds it only ~11 minutes later; here the job is LMOVEd by hand, as the
dying worker would have, against a real Redis.
"""

from __future__ import annotations

import time

import pytest

from sightline.queue import make_queue
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
