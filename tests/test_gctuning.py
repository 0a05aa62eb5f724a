"""``sightline.gctuning``: the cyclic GC tuned while held, as it was once released."""

from __future__ import annotations

import gc
import weakref

from sightline.gctuning import FULL_EVERY, TunedGC


def test_tuned_by_the_first_holder_and_restored_by_the_last() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    tuned = TunedGC(young=12_345)
    tuned.enter()
    tuned.enter()  # a second app of the same process (tests run several)
    assert gc.get_threshold() == (12_345, *before[1:])
    assert gc.get_freeze_count() > frozen_before  # the startup heap, out of the GC's sight
    tuned.exit()
    assert gc.get_threshold()[0] == 12_345  # one holder is still serving
    tuned.exit()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_while_tuned_are_still_collected() -> None:
    tuned = TunedGC(young=12_345)
    tuned.enter()
    try:

        class Node:
            other: object

        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        tuned.exit()


def test_holders_of_two_tunings_interleaved_restore_the_process_settings() -> None:
    """A collector app and a worker in one process (tests): whichever lets go first, the
    thresholds the process had come back with the last one."""
    before = gc.get_threshold()
    serving, working = TunedGC(young=10_000), TunedGC(young=100_000)
    serving.enter()
    working.enter()
    assert gc.get_threshold()[0] == 100_000  # the largest asked for
    serving.exit()
    assert gc.get_threshold()[0] == 100_000
    working.exit()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_holding_and_letting_go_again_and_again_leaves_no_garbage_piling_up() -> None:
    """Unfrozen objects go to the oldest generation uncounted: without the periodic full
    collection, cycles there would never be collected while a process (tests) keeps
    running workers one after the other."""
    tuned = TunedGC(young=100_000)

    class Node:
        other: object

    survivors = []
    for _ in range(60):
        a, b = Node(), Node()  # garbage the young collections have not found yet:
        a.other, b.other = b, a  # frozen by the next holder, then unfrozen into the
        survivors.append(weakref.ref(a))  # oldest generation
        del a, b
        tuned.enter()
        tuned.exit()
    alive = sum(ref() is not None for ref in survivors)
    assert FULL_EVERY <= 20 and alive <= 40, f"{alive} of {len(survivors)} cycles still alive"
