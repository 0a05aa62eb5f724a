"""RQ job functions, importable by dotted path (``worker.jobs.process_batch``).

Two kinds of failure, two policies:

- the database is unreachable (down, restarting, refusing connections, a lock that
  outlived the timeout): not the batch's fault, so the job *returns* an RQ ``Retry``
  and is run again after 1 s, 2 s, 5 s ... then every 10 minutes, for as long as
  ``SIGHTLINE_OUTAGE_RETRY_HOURS`` (a week by default). An outage of any length
  the operator notices within that time loses nothing and needs no hand;
- anything else the job raises is a bug: RQ's own retries (``SIGHTLINE_MAX_RETRIES``,
  set when the collector enqueued the job), then the failed registry, from which
  ``rq requeue`` runs it again once the bug is fixed.

Bad envelopes never fail a job: the batch processor dead-letters them and stores
the rest.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rq import Retry
from sqlalchemy import exc as sa_exc

from worker import runtime
from worker.batch import Prepared

log = logging.getLogger(__name__)

OUTAGE_INTERVALS = (1, 2, 5, 10, 30, 60, 120, 300, 600)
"""Seconds before each retry through a database outage; the last one repeats."""
OUTAGE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
"""The driver cannot reach or use the database (SQLAlchemy wraps psycopg's and sqlite3's
errors in these); IntegrityError / DataError are the batch processor's to isolate."""


def outage_retry(hours: float) -> Retry:
    """Retries spanning ``hours``: the backoff steps, then one every 10 minutes."""
    ramp = sum(OUTAGE_INTERVALS)
    rest = max(0.0, hours * 3600 - ramp)
    return Retry(
        max=len(OUTAGE_INTERVALS) + math.ceil(rest / OUTAGE_INTERVALS[-1]),
        interval=list(OUTAGE_INTERVALS),
    )


def process_batch(envelopes: list[Any]) -> dict[str, int] | Retry:
    """Store one group-commit batch; through a database outage, ask RQ to retry it."""
    prepared = prepare_batch(envelopes)
    return prepared if isinstance(prepared, Retry) else store_batch(prepared)


def prepare_batch(envelopes: list[Any]) -> Prepared | Retry:
    """:func:`process_batch`'s first half, which opens no transaction (``worker.rqworker``
    runs it for the next batch while the last one is written): the envelopes prepared."""
    rt = runtime.current()
    try:
        return rt.processor.prepare_batch(envelopes)
    except OUTAGE_ERRORS as exc:  # the products' cache reads the database
        return _outage(len(envelopes), exc, rt.settings.outage_retry_hours)


def store_batch(prepared: Prepared) -> dict[str, int] | Retry:
    """:func:`process_batch`'s second half: the prepared batch in one transaction."""
    rt = runtime.current()
    try:
        result = rt.processor.store(prepared)
    except OUTAGE_ERRORS as exc:
        return _outage(prepared.envelopes, exc, rt.settings.outage_retry_hours)
    rt.publish(result)  # committed: live viewers may see them now (never raises)
    rt.count(result, prepared.envelopes)
    return {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "dead_letters": result.dead_letters,
        "suppressed": result.suppressed,
        "refused_changes": result.refused_changes,
    }


def _outage(envelopes: int, exc: Exception, hours: float) -> Retry:
    log.warning("database unreachable, batch of %d to be retried: %s", envelopes, exc)
    return outage_retry(hours)
