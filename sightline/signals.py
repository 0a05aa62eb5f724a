"""SIGTERM handled like Ctrl-C, so ``with`` blocks (embedded Redis, worker) unwind in order.

uvicorn shuts down gracefully on SIGINT / SIGTERM and then re-raises the signal
with the previous handler back in place; with this one installed both end as a
KeyboardInterrupt that is caught here, after every ``finally`` has run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with suppress(KeyboardInterrupt):
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)
