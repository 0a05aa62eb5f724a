"""RQ job functions, importable by dotted path (``worker.jobs.process_batch``)."""

from __future__ import annotations

from typing import Any

from worker import runtime


def process_batch(envelopes: list[Any]) -> dict[str, int]:
    """Store one group-commit batch. Raises on infrastructure failure so RQ retries."""
    rt = runtime.current()
    result = rt.processor.process(envelopes)
    rt.count(result, len(envelopes))
    return {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "dead_letters": result.dead_letters,
    }
