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
    """Held by a counter (several apps, or workers in threads, may run in one process,
    as tests do): tuned by the first holder, restored by the last."""

    def __init__(self, young: int) -> None:
        self.young = young
        self._lock = threading.Lock()
        self._holders = 0
        self._collected = False
        self._thresholds = gc.get_threshold()

    def enter(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._thresholds = gc.get_threshold()
                if not self._collected:  # once per process: a process that serves again
                    gc.collect()  # (tests) would walk its whole heap each time (~0.1 s)
                    self._collected = True
                gc.freeze()
                gc.set_threshold(self.young, *self._thresholds[1:])
            self._holders += 1

    def exit(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                gc.set_threshold(*self._thresholds)
                gc.unfreeze()
