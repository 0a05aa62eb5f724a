"""The store's upkeep, from every worker: the coming months' partitions of ``events``
(PostgreSQL) and the retention (``SIGHTLINE_RETENTION_DAYS``), once at start and then
every :data:`INTERVAL` seconds, in a thread beside the jobs.

Several workers doing it at once is safe: partitions are created and dropped under
one advisory lock, and the retention's bounded deletes find nothing the second time.
A database that cannot be reached now is tried again next time (the jobs retry
through an outage on their own).
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.partitions import apply_retention, ensure_partitions, retention_horizon

log = logging.getLogger(__name__)

INTERVAL = 3600.0


class Maintenance:
    def __init__(
        self, engine: sa.Engine, retention_days: int | None, interval: float = INTERVAL
    ) -> None:
        self.engine = engine
        self.retention_days = retention_days
        self.interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> Maintenance:
        """On an engine of its own that keeps no connection between passes: RQ forks its
        scheduler from the worker, and a pooled socket the child inherited would keep a
        SIGKILLed worker's transaction open (``worker.runtime``)."""
        engine = make_engine(settings.sqlalchemy_url, poolclass=sa.pool.NullPool)
        return cls(engine, settings.retention_days)

    def run_once(self) -> None:
        try:
            with self.engine.begin() as conn:
                since = (
                    None
                    if self.retention_days is None
                    else retention_horizon(conn, self.retention_days)
                )
                created = ensure_partitions(conn, since=since)
            if created:
                log.info("created partitions %s", ", ".join(created))
            if self.retention_days is not None:
                done = apply_retention(self.engine, self.retention_days)
                if done.dropped or done.deleted:
                    log.info(
                        "retention (%d days): dropped %s, deleted %s",
                        self.retention_days,
                        done.dropped,
                        done.deleted,
                    )
        except sa.exc.SQLAlchemyError as exc:  # an outage, a lock not granted in time
            log.warning("store maintenance failed, tried again in %.0f s: %s", self.interval, exc)
        except Exception:  # a bug: logged, and the thread lives on for the next pass
            log.exception("store maintenance failed, tried again in %.0f s", self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sightline-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self.run_once()
            self._stopped.wait(self.interval)
