"""The worker's garbage-collector tuning (``worker.main``, a ``sightline.gctuning.TunedGC``):
in place while any worker of the process works, the process's own settings back once
none does."""

from __future__ import annotations

import gc
import threading

import pytest

from tests.harness import System
from worker import main
from worker.main import GC_YOUNG


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_collector_is_tuned_while_a_worker_works_and_restored_after(
    system: System,
) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    working = threading.Event()
    enter = main._BATCH_GC.enter

    def entering() -> None:
        enter()
        seen.append(gc.get_threshold())
        working.set()

    main._BATCH_GC.enter = entering  # type: ignore[method-assign]
    try:
        system.work()
    finally:
        del main._BATCH_GC.enter
    assert working.is_set() and seen[0] == (GC_YOUNG, *before[1:])
    assert gc.get_threshold() == before  # as the system's collector app (held) has it
