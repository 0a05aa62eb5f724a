"""The cyclic garbage collector tuned for a long-running server of many small requests.

Python's cyclic GC collects its young generation each time 700 more container objects
are alive than at the last collection, and the whole heap each time a quarter of it has
been promoted since the last full collection. A server process holds its modules,
clients and caches (~110,000 objects in the collector, SQLAlchemy, Alembic and RQ
among them), and every request in flight keeps its objects alive across young
collections (the collector's wait for its group commit), so they are promoted and the
whole heap is walked again every few thousand requests (~35 ms each, ~8 µs per
request of ``bench/collector_cpu.py``; a tail-latency stall under load).

:class:`TunedGC`, while held: what the process loaded before is collected once and
moved out of the collector's sight (``gc.freeze``: those objects are never collected
until it is released, and they were alive anyway), and the young generation is
collected every ``young`` net allocations instead of 700. Garbage without cycles is
freed by reference counting as always; cycles made meanwhile are collected as before,
a little later.
"""

from __future__ import annotations

import gc
import threading


class TunedGC:
    """One tuning a holder asks for (``young``), held by a count shared by every
    :class:`TunedGC` of the process (a collector app and workers may run in one process,
    as tests do): the first holder of any tunes, the last restores the thresholds the
    process had; meanwhile the young threshold is the largest that a holder asks for.

    Each time the last holder lets go, what was frozen goes back to the oldest
    generation, where CPython's heuristic for a full collection does not count it (only
    what younger collections promote there is counted): a process that holds and lets
    go again and again (tests running workers in one process) would then never run a
    full collection, and its cyclic garbage would pile up. So a full collection runs
    there when the process has let go more than :data:`FULL_EVERY` times since the
    last one it ran (a long-running server or worker lets go once, when it stops)."""

    def __init__(self, young: int) -> None:
        self.young = young

    def enter(self) -> None:
        with _STATE.lock:
            holders = _STATE.holders
            if not holders:
                _STATE.thresholds = gc.get_threshold()
                if not _STATE.collected:  # once: a process that serves again (tests)
                    gc.collect()  # would walk its whole heap each time (~0.1 s)
                    _STATE.collected = True
                gc.freeze()
            holders.append(self.young)
            gc.set_threshold(max(holders), *_STATE.thresholds[1:])

    def exit(self) -> None:
        with _STATE.lock:
            holders = _STATE.holders
            holders.remove(self.young)
            if holders:
                gc.set_threshold(max(holders), *_STATE.thresholds[1:])
                return
            gc.set_threshold(*_STATE.thresholds)
            gc.unfreeze()
            _STATE.released += 1
            if _STATE.released >= FULL_EVERY:
                _STATE.released = 0
                gc.collect()


FULL_EVERY = 20
"""Releases of the tuning (see :class:`TunedGC`) between two full collections."""


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders: list[int] = []
        self.thresholds = gc.get_threshold()
        self.collected = False
        self.released = 0


_STATE = _State()
