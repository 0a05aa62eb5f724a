"""A test-only worker that holds each batch's transaction open: ``python -m tests.slow_worker
SECONDS [sightline worker options]``.

It is ``sightline worker`` with the store write wrapped: once a batch's events are
written, it sleeps ``SECONDS`` inside the transaction, before the commit, so a fault test
can kill it mid-batch (``tests/worker/test_faults.py``). Production code has no such hook.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import worker.batch
from sightline.cli import main as sightline_main


def slow_down_writes(seconds: float) -> None:
    """Make every batch write sleep ``seconds`` after writing, inside its transaction."""
    write_batch = vars(worker.batch)["write_batch"]  # what BatchProcessor._write calls

    def write_then_wait(*args: Any, **kwargs: Any) -> Any:
        result = write_batch(*args, **kwargs)
        time.sleep(seconds)
        return result

    vars(worker.batch)["write_batch"] = write_then_wait


def main(argv: list[str]) -> None:
    seconds, *options = argv
    slow_down_writes(float(seconds))
    sightline_main(["worker", *options], prog_name="sightline")


if __name__ == "__main__":
    main(sys.argv[1:])
