"""The worker's garbage-collector tuning (``worker.main``): in place while any worker of
the process works, the process's own settings back once none does."""

from __future__ import annotations

import gc

from worker.main import GC_YOUNG, _BatchCollector


def test_the_collector_is_tuned_while_a_worker_works_and_restored_after() -> None:
    before = gc.get_threshold()
    tuning = _BatchCollector()
    tuning.enter()
    try:
        assert gc.get_threshold() == (GC_YOUNG, *before[1:])
        assert gc.get_freeze_count() > 0
        tuning.enter()  # a second worker of the same process (threads)
        tuning.exit()
        assert gc.get_threshold()[0] == GC_YOUNG  # the first one still works
    finally:
        tuning.exit()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
