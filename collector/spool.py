"""A bounded local spool for flushes Redis did not acknowledge (``SIGHTLINE_SPOOL``).

While Redis is away, each group-commit flush is appended to this collector's spool file
and fsynced before its requests are answered 2xx; a drainer replays the file to Redis
in order once Redis answers again. When the file would pass ``SIGHTLINE_SPOOL_MAX_BYTES``
the flush is refused (503 + Retry-After, as without a spool).

The file (one per collector process, ``<dir>/collector-<uuid>.spool``):

    header  b"SLSPOOL1" + drained offset (8 bytes, little-endian)
    record  length (4 bytes) + CRC-32 of the payload (4 bytes) + payload
    payload the flush's envelopes as one JSON array (msgspec), bodies byte for byte

Records are written with ``pwrite`` at the end this process keeps (one writer, the
flusher) and ``fdatasync``-ed before anyone is answered; the drainer reads from the
drained offset to that end, sends the records as RQ jobs (built at drain time by the
same :class:`~sightline.queue.JobBuilder`) and writes the new drained offset into the
header after Redis acknowledged them. When everything is drained the file is cut back
to its header. A record whose length or CRC does not check ends the file: it can only
be a write a crash cut short, which nobody was answered for.

Ownership: the process that creates a file holds an exclusive ``flock`` on it for its
whole life. A file in the directory that can be locked has no live owner (its collector
died or stopped with Redis away): any collector of the directory takes the lock, checks
the path still names the file it opened (so a file drained and deleted meanwhile is not
drained again), drains it and deletes it. The lock is never shared: two collectors never
drain one file.

Exactly once: a spooled envelope keeps the id the collector gave it, so every event in it
keeps its message id (the client's, else one derived from the envelope id, or from the
content and the receive time the envelope carries). A job is sent to Redis again only in
two narrow windows: a Redis write that timed out on a hung server and still landed later
(the flush was spooled too), and a process that died between Redis's acknowledgement of a
drained job and the header update. The worker stores each (product, message id) once
(``uq_events_product_message``) and counts the rest as duplicates, so each acknowledged
event is stored exactly once; the header offset is not fsynced for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from sightline.envelope import Envelope

log = logging.getLogger(__name__)

MAGIC = b"SLSPOOL1"
HEADER = struct.Struct("<8sQ")
RECORD = struct.Struct("<II")
SUFFIX = ".spool"
ROOM = 4096
"""What /health requires to be left under the bound to call the spool open."""

_encoder = msgspec.json.Encoder()
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])

JobWriter = Callable[[Sequence[msgspec.Raw]], Awaitable[object]]


class SpoolFull(Exception):
    """The flush does not fit under the spool's bound."""


@dataclass
class Batch:
    """Records read from a spool file: their envelopes and the offset after them."""

    envelopes: list[msgspec.Raw]
    end: int


class SpoolFile:
    """One spool file: appended by its owner, drained by whoever holds its lock."""

    def __init__(self, path: Path, fd: int, end: int, drained: int) -> None:
        self.path = path
        self._fd = fd
        self.end = end
        """Where the next record goes: everything before it is fsynced."""
        self.drained = drained
        """Everything before it is in Redis."""

    @classmethod
    def create(cls, directory: Path) -> SpoolFile:
        """A new file, locked and with its header before its name says it is a spool."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"collector-{uuid.uuid4().hex}"
        making = directory / f".{name}.new"
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours for as long as we live
        os.pwrite(fd, HEADER.pack(MAGIC, HEADER.size), 0)
        os.fsync(fd)
        path = directory / f"{name}{SUFFIX}"
        making.rename(path)  # the lock is the inode's: it comes along
        _fsync_directory(directory)
        return cls(path, fd, HEADER.size, HEADER.size)

    @classmethod
    def adopt(cls, path: Path) -> SpoolFile | None:
        """The file at ``path`` if no live process owns it (we then hold its lock)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its collector is alive (or another one drains it)
            os.close(fd)
            return None
        try:
            if path.stat().st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(path)  # drained and deleted while we waited
            magic, drained = HEADER.unpack(os.pread(fd, HEADER.size, 0).ljust(HEADER.size))
            size = os.fstat(fd).st_size
            if magic != MAGIC or not HEADER.size <= drained <= size:
                kept = path.with_suffix(".damaged")
                path.rename(kept)  # not scanned again; kept for whoever can read it
                log.error("spool %s: its header is damaged; renamed %s, not sent", path, kept)
                os.close(fd)
                return None
        except FileNotFoundError:
            os.close(fd)
            return None
        return cls(path, fd, size, drained)

    @property
    def backlog(self) -> int:
        """Bytes of records not yet in Redis."""
        return self.end - self.drained

    def append(self, envelopes: Sequence[Envelope], max_bytes: int) -> int:
        """Write one record and fsync it; its size. Raises :class:`SpoolFull`."""
        payload = _encoder.encode(envelopes)
        record = RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        if self.end + len(record) > max_bytes:
            raise SpoolFull(f"{self.end + len(record)} bytes would pass {max_bytes}")
        try:
            written = os.pwrite(self._fd, record, self.end)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
            os.fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):  # no half record left after the last whole one
                os.ftruncate(self._fd, self.end)
            raise
        self.end += len(record)
        return len(record)

    def read(self, max_events: int, max_bytes: int = 8 << 20) -> Batch:
        """Whole records from the drained offset: at least one, then up to the limits."""
        envelopes: list[msgspec.Raw] = []
        offset = self.drained
        while offset < self.end and (not envelopes or offset - self.drained < max_bytes):
            head = os.pread(self._fd, RECORD.size, offset)
            if len(head) < RECORD.size:
                self._torn(offset)
                break
            length, crc = RECORD.unpack(head)
            if offset + RECORD.size + length > self.end:  # a torn length: read no further
                self._torn(offset)
                break
            payload = os.pread(self._fd, length, offset + RECORD.size)
            if len(payload) < length or zlib.crc32(payload) != crc:
                self._torn(offset)
                break
            records = _raw_list.decode(payload)
            if envelopes and len(envelopes) + len(records) > max_events:
                break
            envelopes.extend(records)
            offset += RECORD.size + length
        return Batch(envelopes, offset)

    def _torn(self, offset: int) -> None:
        log.warning(
            "spool %s: %d bytes after the last whole record (a write cut short by a crash, "
            "never acknowledged) are dropped",
            self.path,
            self.end - offset,
        )
        self.end = offset

    def mark_drained(self, offset: int) -> None:
        """Redis acknowledged everything before ``offset``."""
        self.drained = offset
        # Not fsynced: after a machine crash the records since the last write-back are sent
        # again, and the worker stores each message id once.
        os.pwrite(self._fd, HEADER.pack(MAGIC, offset), 0)

    def reset(self) -> None:
        """Everything is drained: cut the file back to its header."""
        os.ftruncate(self._fd, HEADER.size)
        os.pwrite(self._fd, HEADER.pack(MAGIC, HEADER.size), 0)
        os.fdatasync(self._fd)
        self.end = self.drained = HEADER.size

    def close(self, *, delete: bool) -> None:
        if delete:  # while we hold the lock: nobody else can have it open and locked
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)


def _remove_unfinished(directory: Path) -> None:
    """Files a collector died creating (before any record): a minute old, unlocked, gone."""
    for path in directory.glob(".collector-*.new"):
        try:
            if time.time() - path.stat().st_mtime < 60:  # maybe being created right now
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except BlockingIOError:  # its creator lives
            pass
        finally:
            os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolMetrics(Protocol):
    """What the spool reports (``collector.metrics.Metrics`` implements it)."""

    def count_spooled(self, events: int) -> None: ...
    def count_drained(self, events: int) -> None: ...
    def set_spool_bytes(self, pending: int) -> None: ...


class _Unobserved:
    def count_spooled(self, events: int) -> None:
        pass

    def count_drained(self, events: int) -> None:
        pass

    def set_spool_bytes(self, pending: int) -> None:
        pass


class Spool:
    """This collector's spool file, its drainer, and the adoption of orphaned files."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_events: int,
        timeout: float,
        metrics: SpoolMetrics | None = None,
        interval: float = 0.5,
        orphan_interval: float = 2.0,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._max_events = max_events
        self._timeout = timeout
        self._metrics: SpoolMetrics = metrics or _Unobserved()
        self._interval = interval
        self._orphan_interval = orphan_interval
        self._own: SpoolFile | None = None
        self._adopted: SpoolFile | None = None
        self._lock = asyncio.Lock()
        """Held by an append and by the cut back to the header: never both at once."""
        self._write: JobWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._refusing = False
        """The last flush did not fit: /health says so until one does or a drain frees room."""

    @property
    def active(self) -> bool:
        """Records wait in this collector's own file: new flushes join them, in order."""
        return self._own is not None and self._own.backlog > 0

    @property
    def pending_bytes(self) -> int:
        """Bytes not yet in Redis: this collector's file and an orphan it is draining."""
        return sum(f.backlog for f in (self._own, self._adopted) if f is not None)

    @property
    def has_room(self) -> bool:
        """Whether this collector's file takes flushes: the last one fitted, and there is
        room for another small one."""
        return (
            self._own is not None and not self._refusing and self._own.end + ROOM < self.max_bytes
        )

    async def start(self, write: JobWriter) -> None:
        self._write = write
        self._own = await asyncio.to_thread(SpoolFile.create, self.directory)
        self._task = asyncio.create_task(self._drain_forever(), name="spool-drainer")

    async def stop(self) -> None:
        """Stop draining; an empty file is deleted, a non-empty one is left (unlocked)
        for the next collector of the directory."""
        self._stopping.set()
        if self._task is not None:
            # Let the step in hand end (its file I/O must not outlive the file); a Redis
            # write it waits on is bounded by the timeout.
            done, _ = await asyncio.wait([self._task], timeout=self._timeout + 5)
            if not done:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._adopted is not None:
            self._adopted.close(delete=False)
            self._adopted = None
        if self._own is not None:
            if self._own.backlog:
                log.warning(
                    "spool %s keeps %d bytes Redis has not acknowledged; the next collector "
                    "started on %s sends them",
                    self._own.path,
                    self._own.backlog,
                    self.directory,
                )
            self._own.close(delete=not self._own.backlog)
            self._own = None

    async def append(self, envelopes: Sequence[Envelope]) -> None:
        """Spool one flush (fsynced when this returns). Raises :class:`SpoolFull`/``OSError``."""
        own = self._own
        if own is None:
            raise SpoolFull("the spool is not open")
        async with self._lock:
            try:
                await asyncio.to_thread(own.append, envelopes, self.max_bytes)
            except SpoolFull:
                self._refusing = True
                raise
            self._refusing = False
        self._metrics.count_spooled(len(envelopes))
        self._metrics.set_spool_bytes(self.pending_bytes)

    async def _drain_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_orphan_scan = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return
            try:
                if self._own is not None and self._own.backlog:
                    await self._drain(self._own)
                if loop.time() >= next_orphan_scan:
                    next_orphan_scan = loop.time() + self._orphan_interval
                    await self._drain_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis still away (or the disk): try again later
                log.info("spool drain paused: %r", exc)

    async def _drain(self, spool: SpoolFile) -> None:
        """Send ``spool``'s records to Redis until it is empty (raises when Redis fails)."""
        assert self._write is not None
        while spool.backlog and not self._stopping.is_set():
            batch = await asyncio.to_thread(spool.read, self._max_events)
            if batch.envelopes:
                await asyncio.wait_for(self._write(batch.envelopes), self._timeout)
                self._metrics.count_drained(len(batch.envelopes))
            await asyncio.to_thread(spool.mark_drained, batch.end)
            self._metrics.set_spool_bytes(self.pending_bytes)
        if spool is self._own:
            async with self._lock:
                if not spool.backlog:  # nothing was appended meanwhile
                    await asyncio.to_thread(spool.reset)
                    self._refusing = False

    async def _drain_orphans(self) -> None:
        await asyncio.to_thread(_remove_unfinished, self.directory)
        own = self._own.path if self._own is not None else None
        paths = await asyncio.to_thread(sorted, self.directory.glob(f"*{SUFFIX}"))
        for path in paths:
            if path == own or self._stopping.is_set():
                continue
            orphan = await asyncio.to_thread(SpoolFile.adopt, path)
            if orphan is None:
                continue
            self._adopted = orphan
            try:
                if orphan.backlog:
                    log.warning("spool %s: sending %d bytes", path, orphan.backlog)
                await self._drain(orphan)
            finally:
                self._adopted = None
                await asyncio.to_thread(orphan.close, delete=not orphan.backlog)
