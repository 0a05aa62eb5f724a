"""Several queued jobs in one transaction (``worker.rqworker``): what each job would do alone.

The worker takes a backlog of collector flushes (up to ``SIGHTLINE_WORKER_MAX_EVENTS``
envelopes) and stores them in one batch; a poisoned envelope is still a dead letter
beside stored neighbours, a job that raises fails alone, a recovered job runs alone, and
RQ's bookkeeping leaves nothing behind in Redis.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

import worker.batch
from sightline.queue import make_queue
from sightline.store.schema import events
from tests.harness import System
from tests.jobs import JobWriter
from tests.load import wait_for
from tests.worker.test_batch import forged
from tests.worker.test_faults import event_count_of, stored, track_batch, worker_process
from worker import jobs
from worker.batch import Prepared
from worker.recovery import RECOVERIES


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size (envelopes) of every batch the worker stores, one per transaction."""
    sizes: list[int] = []
    store_batch = jobs.store_batch

    def recording(prepared: Prepared) -> Any:
        sizes.append(prepared.envelopes)
        return store_batch(prepared)

    monkeypatch.setattr(jobs, "store_batch", recording)
    return sizes


def write_boom_fails(monkeypatch: pytest.MonkeyPatch, *, in_main_thread: bool = True) -> None:
    """A bug in the store: writing a batch holding an event named "Boom" raises (with
    ``in_main_thread=False``, only in the worker's writer thread)."""
    write_batch = vars(worker.batch)["write_batch"]

    def buggy(conn: sa.Connection, items: list[Any], *args: Any) -> Any:
        here = in_main_thread or threading.current_thread() is not threading.main_thread()
        if here and any(e.name == "Boom" for item in items for e in item.events):
            raise RuntimeError("a bug in the store")
        return write_batch(conn, items, *args)

    monkeypatch.setattr(worker.batch, "write_batch", buggy)


def write_jobs(system: System, *batches: list[Any]) -> list[str]:
    queue = make_queue(system.redis, system.settings.queue_name)
    writer = JobWriter(queue, max_retries=1, job_timeout=60)
    for batch in batches:
        writer.write(batch)
    return list(queue.job_ids)


def track(system: System, message_id: str, name: str = "E", user: str = "u") -> dict[str, Any]:
    return forged(system, id=f"env-{message_id}", body={"userId": user, "event": name,
                                                        "messageId": message_id})  # fmt: skip


def assert_rq_left_nothing(system: System) -> None:
    queue = make_queue(system.redis, system.settings.queue_name)
    assert queue.count == 0
    assert system.redis.llen(queue.intermediate_queue_key) == 0
    assert StartedJobRegistry(queue.name, connection=system.redis).count == 0
    assert system.redis.keys("rq:job:*") == []
    assert system.redis.keys("rq:execution:*") == []
    assert system.redis.keys("rq:executions:*") == []
    for key in system.redis.keys("rq:worker:*:executions"):
        assert system.redis.scard(key) == 0


def send(system: System, kind: str, message_id: str, **body: Any) -> None:
    """One request, one collector flush: one job (the server key: account parents)."""
    response = system.send(f"/v1/{kind}", {"messageId": message_id} | body, key=system.server_key)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_backlog_is_stored_in_one_transaction_with_its_dead_letters(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(system, "group", "g-a", userId="a", groupId="A")
    send(system, "group", "g-b", userId="b", groupId="B", traits={"parentId": "A"})
    system.work()
    sizes = record_batches(monkeypatch)
    # Among good jobs: a cycle (A under B) the store refuses, and garbage.
    send(system, "track", "fine-1", userId="a", event="E")
    send(system, "group", "g-cycle", userId="a", groupId="A", traits={"parentId": "B"})
    send(system, "track", "fine-2", userId="b", event="E")
    write_jobs(system, [{"not": "an envelope"}, track(system, "fine-3")])
    assert system.queued_jobs() == 4
    system.work()
    assert sizes == [5], "the four jobs in one batch"
    assert {e.message_id for e in system.events()} == {"g-a", "g-b", "fine-1", "fine-2", "fine-3"}
    assert sorted(d.reason for d in system.dead_letters()) == ["envelope", "identity"]
    assert_rq_left_nothing(system)
    status = system.status()
    assert (status.processed, status.stored, status.dead_letters) == (7, 5, 2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_batch_is_bounded_by_max_events(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(monkeypatch)
    write_jobs(system, *[[track(system, f"m-{j}-{i}") for i in range(3)] for j in range(7)])
    run = system.settings.with_changes(worker_max_events=7)
    from worker.main import run_worker

    run_worker(run, burst=True)
    assert sizes == [9, 9, 3], "whole jobs, up to the first that reaches 7 envelopes"
    assert len(system.events()) == 21
    assert_rq_left_nothing(system)

    sizes.clear()
    write_jobs(system, *[[track(system, f"n-{j}")] for j in range(3)])
    run_worker(system.settings.with_changes(worker_max_events=1), burst=True)
    assert sizes == [1, 1, 1]
    assert len(system.events()) == 24
    assert_rq_left_nothing(system)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_raising_in_a_combined_batch_fails_alone(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_boom_fails(monkeypatch)
    sizes = record_batches(monkeypatch)
    ids = write_jobs(
        system,
        [track(system, "ok-1")],
        [track(system, "boom", name="Boom"), track(system, "ok-2")],
        [track(system, "ok-3")],
    )
    system.work()
    assert sizes == [4, 1, 2, 1], "together, then each on its own"
    assert {e.message_id for e in system.events()} == {"ok-1", "ok-3"}
    # RQ's own failure handling, for that job alone: a retry, then the failed registry.
    scheduled = ScheduledJobRegistry(system.settings.queue_name, connection=system.redis)
    assert scheduled.get_job_ids() == [ids[1]]
    time.sleep(1.2)  # the retry interval
    system.work()
    assert sizes == [4, 1, 2, 1, 2]
    failed = FailedJobRegistry(system.settings.queue_name, connection=system.redis)
    assert failed.get_job_ids() == [ids[1]]
    queue = make_queue(system.redis, system.settings.queue_name)
    assert queue.count == 0 and StartedJobRegistry(queue.name, connection=system.redis).count == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_recovered_job_runs_alone(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = record_batches(monkeypatch)
    ids = write_jobs(system, *[[track(system, f"r-{j}")] for j in range(4)])
    queue = make_queue(system.redis, system.settings.queue_name)
    recovered = Job.fetch(ids[1], connection=system.redis, serializer=queue.serializer)
    recovered.meta[RECOVERIES] = 1
    recovered.save_meta()  # type: ignore[no-untyped-call]
    system.work()
    assert sizes == [3, 1], "the recovered job back at the front, then alone"
    assert len(system.events()) == 4
    assert_rq_left_nothing(system)


def test_a_worker_killed_holding_several_jobs_loses_and_doubles_nothing(system: System) -> None:
    per_job, jobs_count = 60, 4
    for j in range(jobs_count):
        track_batch(system, per_job, user=f"u{j}")
    assert system.queued_jobs() == jobs_count
    started = StartedJobRegistry(system.settings.queue_name, connection=system.redis)
    # Worker A claims the whole backlog, then sleeps in the transaction after writing.
    with worker_process(system, write_delay=60) as a:
        wait_for(lambda: started.count == jobs_count, 30, "worker A claims every job")
        time.sleep(1.0)
        assert system.queued_jobs() == 0
        with worker_process(system) as b:
            time.sleep(2.0)
            assert a.poll() is None and b.poll() is None
            os.kill(a.pid, signal.SIGKILL)
            wait_for(_all_stored(system, per_job * jobs_count), 60, "the backlog is stored")
            time.sleep(0.5)
            assert b.poll() is None
    ids = [r.message_id for r in system.sql(sa.select(events.c.message_id))]
    assert (len(ids), len(set(ids))) == (per_job * jobs_count, per_job * jobs_count)
    for j in range(jobs_count):
        assert event_count_of(system, f"u{j}") == per_job
    assert system.queued_jobs() == 0
    assert started.count == 0
    assert FailedJobRegistry(system.settings.queue_name, connection=system.redis).count == 0


def _all_stored(system: System, total: int) -> Callable[[], bool]:
    return lambda: stored(system) == total


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_whose_data_cannot_be_read_fails_alone(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(monkeypatch)
    ids = write_jobs(system, *[[track(system, f"c-{j}")] for j in range(4)])
    system.redis.hset(Job.key_for(ids[2]), "data", b"\x00 not JSON")
    system.work()
    assert sizes == [3], "the unreadable job back at the front of the queue, for RQ alone"
    assert {e.message_id for e in system.events()} == {"c-0", "c-1", "c-3"}
    queue = make_queue(system.redis, system.settings.queue_name)
    assert queue.count == 0 and StartedJobRegistry(queue.name, connection=system.redis).count == 0
    assert system.redis.llen(queue.intermediate_queue_key) == 0
    registries = (
        ScheduledJobRegistry(queue.name, connection=system.redis),
        FailedJobRegistry(queue.name, connection=system.redis),
    )
    assert [job_id for r in registries for job_id in r.get_job_ids()] == [ids[2]]


class Timeline:
    """When each batch was prepared and written, and by which thread.

    A write is slow (a slow database): it takes 0.2 s; or, given the ``envelopes`` the
    worker is to prepare in all, it lasts until the worker begins preparing another batch
    or has prepared them all (the order a loaded machine's timing cannot change)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, envelopes: int | None = None) -> None:
        self.entries: list[tuple[str, int, str]] = []  # (what, envelopes, thread)
        self._noted = threading.Condition()
        prepare_batch, store_batch = jobs.prepare_batch, jobs.store_batch

        def preparing(envelopes: list[Any]) -> Any:
            self._note("prepare", len(envelopes))
            return prepare_batch(envelopes)

        def storing(prepared: Prepared) -> Any:
            self._note("write", prepared.envelopes)
            if envelopes is None:
                time.sleep(0.2)
            else:
                self._wait_for_a_prepare(envelopes)
            try:
                return store_batch(prepared)
            finally:
                self._note("written", prepared.envelopes)

        monkeypatch.setattr(jobs, "prepare_batch", preparing)
        monkeypatch.setattr(jobs, "store_batch", storing)

    def _wait_for_a_prepare(self, envelopes: int) -> None:
        with self._noted:
            since = len(self.entries)

            def prepared() -> bool:
                later = self.entries[since:]
                done = sum(n for what, n, _ in self.entries if what == "prepare")
                return done >= envelopes or any(what == "prepare" for what, _, _ in later)

            assert self._noted.wait_for(prepared, timeout=30), "the next batch was prepared"

    def _note(self, what: str, envelopes: int) -> None:
        with self._noted:
            self.entries.append((what, envelopes, threading.current_thread().name))
            self._noted.notify_all()

    def steps(self) -> list[tuple[str, int]]:
        return [(what, n) for what, n, _ in self.entries]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_next_batch_is_prepared_while_the_last_is_written(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = Timeline(monkeypatch, envelopes=15)
    write_jobs(system, *[[track(system, f"w-{j}-{i}") for i in range(3)] for j in range(5)])
    from worker.main import run_worker

    run_worker(system.settings.with_changes(worker_max_events=6), burst=True)
    steps = timeline.steps()
    at: dict[str, list[int]] = {"prepare": [], "write": [], "written": []}
    for place, (what, _) in enumerate(steps):
        at[what].append(place)
    for what in at:
        assert [steps[i][1] for i in at[what]] == [6, 6, 3], steps
    prepared, writes, written = at["prepare"], at["write"], at["written"]
    for n in range(3):
        assert prepared[n] < writes[n] < written[n], steps  # prepared, then written
        if n < 2:
            assert written[n] < writes[n + 1], steps  # one write at a time, in order
            assert prepared[n + 1] < written[n], steps  # the next prepared meanwhile
    threads = {thread for what, _, thread in timeline.entries if what == "write"}
    assert len(threads) == 1 and threading.main_thread().name not in threads, "one writer"
    assert len({e.message_id for e in system.events()}) == 15
    assert_rq_left_nothing(system)
    assert not [t for t in threading.enumerate() if t.name.endswith("-writer_0")], (
        "the writer thread ends with its worker"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_raising_in_the_writer_thread_is_run_job_by_job(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_boom_fails(monkeypatch, in_main_thread=False)
    sizes = record_batches(monkeypatch)
    write_jobs(
        system,
        [track(system, "a-1"), track(system, "a-2")],
        [track(system, "boom", name="Boom")],
        [track(system, "b-1"), track(system, "b-2"), track(system, "b-3")],
    )
    from worker.main import run_worker

    run_worker(system.settings.with_changes(worker_max_events=3), burst=True)
    # The first batch (3 envelopes) failed in the writer thread; its two jobs ran again on
    # their own, RQ's way, in this thread (where this bug does not strike); then the next
    # batch, in the writer thread.
    assert sizes == [3, 2, 1, 3]
    names = {e.message_id for e in system.events()}
    assert names == {"a-1", "a-2", "boom", "b-1", "b-2", "b-3"}
    assert_rq_left_nothing(system)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_outage_while_writing_behind_retries_that_batch(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = vars(worker.batch.BatchProcessor)["store"]
    failed_once: list[int] = []

    def unreachable_once(self: worker.batch.BatchProcessor, prepared: Prepared) -> Any:
        if not failed_once:
            failed_once.append(prepared.envelopes)
            raise sa.exc.OperationalError("INSERT", {}, Exception("the database went away"))
        return store(self, prepared)

    monkeypatch.setattr(worker.batch.BatchProcessor, "store", unreachable_once)
    ids = write_jobs(system, *[[track(system, f"o-{j}")] for j in range(4)])
    from worker.main import run_worker

    run_worker(system.settings.with_changes(worker_max_events=2), burst=True)
    assert failed_once == [2]
    assert {e.message_id for e in system.events()} == {"o-2", "o-3"}
    scheduled = ScheduledJobRegistry(system.settings.queue_name, connection=system.redis)
    assert sorted(scheduled.get_job_ids()) == sorted(ids[:2]), "RQ's retry, for that batch"
    time.sleep(1.2)  # the first outage interval
    system.work()
    assert len(system.events()) == 4
    assert_rq_left_nothing(system)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_warm_stop_ends_the_batch_in_hand_and_leaves_the_rest_queued(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = Timeline(monkeypatch)
    write_jobs(system, *[[track(system, f"s-{j}")] for j in range(8)])
    from worker.main import run_worker

    def stop_soon() -> None:
        while not any(what == "write" for what, _ in timeline.steps()):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # RQ's handler: a warm stop while busy

    stopper = threading.Thread(target=stop_soon)
    stopper.start()
    run_worker(system.settings.with_changes(worker_max_events=2), burst=True)
    stopper.join()
    stored_now = len(system.events())
    assert stored_now in (2, 4, 6), "whole batches: those in hand when the stop came"
    assert system.queued_jobs() == 8 - stored_now
    assert StartedJobRegistry(system.settings.queue_name, connection=system.redis).count == 0
    system.work()
    assert len(system.events()) == 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stop_during_the_last_rounds_write_is_a_warm_stop(
    system: System, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The signal comes once the round before has ended (and the worker had gone idle
    in Redis while the last round was in hand, so RQ raised ``StopRequested`` into the
    wait for its write: the batch was taken for failed, its jobs run again one by one,
    and the stop lost): the round is finished as any other, each job once."""
    timeline = Timeline(monkeypatch)
    write_jobs(system, *[[track(system, f"l-{j}")] for j in range(4)])
    from worker.main import run_worker

    def stop_at_the_last_write() -> None:
        while [what for what, _ in timeline.steps()].count("write") < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_at_the_last_write)
    stopper.start()
    run_worker(system.settings.with_changes(worker_max_events=2), burst=True)
    stopper.join()
    assert [step for step in timeline.steps() if step[0] == "write"] == [("write", 2)] * 2
    assert not [r for r in caplog.records if "running each on its own" in r.getMessage()]
    assert len(system.events()) == 4
    assert system.queued_jobs() == 0
    assert StartedJobRegistry(system.settings.queue_name, connection=system.redis).count == 0
