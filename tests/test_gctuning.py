"""``sightline.gctuning``: the cyclic GC tuned while held, as it was once released."""

from __future__ import annotations

import gc
import weakref

from sightline.gctuning import TunedGC


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
