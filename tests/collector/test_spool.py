"""The spool file and its drainer, in process: order, bound, torn tails, orphans, locks.

The same with real servers (Redis SIGKILLed under load, a collector killed with a
non-empty spool) is ``tests/collector/test_spool_outage.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from collector.groupcommit import GroupCommitter
from collector.spool import HEADER, SUFFIX, Spool, SpoolFile, SpoolFull
from sightline.envelope import Envelope
from sightline.errors import QueueUnavailable
from sightline.preflight import check_spool
from sightline.settings import Settings, SettingsError
from tests.collector.test_groupcommit import envelope


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FlakyRedis:
    """A job writer that fails while ``down``; records the envelope ids of every job."""

    def __init__(self) -> None:
        self.down = False
        self.jobs: list[list[str]] = []

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        if self.down:
            raise ConnectionError("Redis is away")
        self.jobs.append([e.id for e in envelopes])

    async def write_raw(self, envelopes: Sequence[msgspec.Raw]) -> None:
        if self.down:
            raise ConnectionError("Redis is away")
        self.jobs.append([msgspec.json.decode(e)["id"] for e in envelopes])

    @property
    def ids(self) -> list[str]:
        return [i for job in self.jobs for i in job]


async def until(check: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (callable(check) and check()):
        assert loop.time() < deadline, f"{what}: not within 30 s"
        await asyncio.sleep(0.01)


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


@pytest.mark.anyio
async def test_while_redis_is_away_flushes_are_spooled_then_drained_in_order(
    tmp_path: Path,
) -> None:
    redis = FlakyRedis()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_events=1000, timeout=5, interval=0.01)
    committer = GroupCommitter(redis.write, timeout=5, spool=spool)
    await spool.start(redis.write_raw)
    await committer.start()
    await committer.submit([envelope(0)])
    redis.down = True
    for n in range(1, 30):  # every one answered (no QueueUnavailable) while Redis is away
        await committer.submit([envelope(n)])
    assert spool.active and spool.pending_bytes > 0
    [own] = spool_files(tmp_path)
    assert own.stat().st_size > HEADER.size
    redis.down = False
    # Redis is back: the next flushes still join the spool, behind what waits there.
    await asyncio.gather(*(committer.submit([envelope(n)]) for n in range(30, 40)))
    await until(lambda: not spool.active, "the spool is drained")
    await committer.submit([envelope(40)])  # and then straight to Redis again
    await committer.stop()
    await spool.stop()
    assert redis.ids == [str(n) for n in range(41)]
    assert spool_files(tmp_path) == []  # an empty spool is deleted at stop


@pytest.mark.anyio
async def test_a_full_spool_answers_503_and_keeps_what_it_took(tmp_path: Path) -> None:
    redis = FlakyRedis()
    redis.down = True
    spool = Spool(tmp_path, max_bytes=2000, max_events=1000, timeout=5, interval=0.01)
    committer = GroupCommitter(redis.write, timeout=5, spool=spool)
    await spool.start(redis.write_raw)
    await committer.start()
    answered: list[int] = []
    refused: list[int] = []
    for n in range(40):
        try:
            await committer.submit([envelope(n)])
            answered.append(n)
        except QueueUnavailable:
            refused.append(n)
    assert answered and refused
    assert answered == list(range(len(answered))), "nothing is taken once the spool is full"
    assert not spool.has_room
    assert spool_files(tmp_path)[0].stat().st_size <= 2000
    redis.down = False
    await until(lambda: not spool.active, "the spool is drained")
    await committer.submit([envelope(99)])
    await committer.stop()
    await spool.stop()
    assert redis.ids == [str(n) for n in answered] + ["99"]


def test_a_locked_file_is_never_adopted_and_an_orphan_is(tmp_path: Path) -> None:
    live = SpoolFile.create(tmp_path)
    live.append([envelope(1)], 1 << 20)
    assert SpoolFile.adopt(live.path) is None  # its owner holds the lock
    live.close(delete=False)  # the owner is gone: the lock with it
    orphan = SpoolFile.adopt(live.path)
    assert orphan is not None and orphan.backlog == live.backlog
    assert SpoolFile.adopt(live.path) is None  # one drainer per file
    orphan.close(delete=True)
    assert SpoolFile.adopt(live.path) is None


def test_a_torn_tail_is_dropped_and_the_whole_records_are_kept(tmp_path: Path) -> None:
    spool = SpoolFile.create(tmp_path)
    spool.append([envelope(1), envelope(2)], 1 << 20)
    spool.append([envelope(3)], 1 << 20)
    whole = spool.end
    spool.close(delete=False)
    with spool.path.open("ab") as file:  # a crash in the middle of a third append
        file.write(b'\x40\x00\x00\x00\x00\x00\x00\x00{"v":1,')
    orphan = SpoolFile.adopt(spool.path)
    assert orphan is not None
    batch = orphan.read(max_events=100)
    assert [msgspec.json.decode(e)["id"] for e in batch.envelopes] == ["1", "2", "3"]
    assert batch.end == whole and orphan.backlog == whole - HEADER.size
    orphan.mark_drained(batch.end)
    assert orphan.backlog == 0
    orphan.close(delete=True)


def test_the_drained_offset_survives_the_process(tmp_path: Path) -> None:
    spool = SpoolFile.create(tmp_path)
    for n in range(5):
        spool.append([envelope(n)], 1 << 20)
    first = spool.read(max_events=2)
    assert len(first.envelopes) == 2  # whole records, up to max_events
    spool.mark_drained(first.end)
    spool.close(delete=False)
    orphan = SpoolFile.adopt(spool.path)
    assert orphan is not None
    rest = orphan.read(max_events=100)
    assert [msgspec.json.decode(e)["id"] for e in rest.envelopes] == ["2", "3", "4"]
    orphan.close(delete=False)


def test_an_append_that_does_not_fit_raises_and_leaves_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    spool = SpoolFile.create(tmp_path)
    spool.append([envelope(1)], 1 << 20)
    size = spool.end
    with pytest.raises(SpoolFull):
        spool.append([envelope(n) for n in range(100)], size + 100)
    assert spool.end == size == spool.path.stat().st_size
    spool.close(delete=True)


@pytest.mark.anyio
async def test_two_collectors_drain_a_dead_ones_file_once(tmp_path: Path) -> None:
    dead = SpoolFile.create(tmp_path)
    for n in range(20):
        dead.append([envelope(n)], 1 << 20)
    dead.close(delete=False)  # SIGKILL: the file stays, unlocked
    redis = FlakyRedis()
    spools = [
        Spool(tmp_path, max_bytes=1 << 20, max_events=3, timeout=5, interval=0.01) for _ in range(2)
    ]
    for spool in spools:
        await spool.start(redis.write_raw)
    assert len(spool_files(tmp_path)) == 3
    await until(lambda: len(spool_files(tmp_path)) == 2, "the orphan is drained and deleted")
    for spool in spools:
        await spool.stop()
    assert redis.ids == [str(n) for n in range(20)]
    assert spool_files(tmp_path) == []


def test_the_spool_setting_is_off_on_or_a_directory(tmp_path: Path) -> None:
    assert Settings.from_env({}).spool_dir is None
    on = Settings.from_env({"SIGHTLINE_DATA_DIR": str(tmp_path), "SIGHTLINE_SPOOL": "on"})
    assert on.spool_dir == tmp_path / "spool"
    elsewhere = Settings.from_env({"SIGHTLINE_SPOOL": str(tmp_path / "s")})
    assert elsewhere.spool_dir == tmp_path / "s"
    afile = tmp_path / "a-file"
    afile.write_text("")
    with pytest.raises(SettingsError, match=r"^SIGHTLINE_SPOOL: .*not a directory"):
        Settings.from_env({"SIGHTLINE_SPOOL": str(afile)})
    with pytest.raises(SettingsError, match=r"^SIGHTLINE_SPOOL_MAX_BYTES: must be greater"):
        Settings.from_env({"SIGHTLINE_SPOOL_MAX_BYTES": "0"})
    with pytest.raises(SettingsError, match=r"^SIGHTLINE_SPOOL: cannot create"):
        check_spool(Settings(spool=str(afile / "spool")))
    check_spool(on)
    assert (tmp_path / "spool").is_dir()


def test_a_torn_length_is_not_read_and_a_damaged_header_is_set_aside(tmp_path: Path) -> None:
    spool = SpoolFile.create(tmp_path)
    spool.append([envelope(1)], 1 << 20)
    whole = spool.end
    spool.close(delete=False)
    with spool.path.open("ab") as file:  # a length of 4 GiB, cut short
        file.write(b"\xff\xff\xff\xff\x00\x00\x00\x00{")
    orphan = SpoolFile.adopt(spool.path)
    assert orphan is not None
    batch = orphan.read(max_events=100)
    assert len(batch.envelopes) == 1 and batch.end == whole
    orphan.close(delete=False)
    with spool.path.open("r+b") as file:
        file.write(b"garbage!")
    assert SpoolFile.adopt(spool.path) is None
    assert not spool.path.exists()
    assert spool.path.with_suffix(".damaged").exists()  # kept, and not scanned again


@pytest.mark.anyio
async def test_a_file_left_half_created_goes_once_a_minute_old(tmp_path: Path) -> None:
    fresh, old = tmp_path / ".collector-a.new", tmp_path / ".collector-b.new"
    fresh.write_bytes(b"")
    old.write_bytes(b"")
    os.utime(old, (time.time() - 120, time.time() - 120))
    spool = Spool(tmp_path, max_bytes=1 << 20, max_events=10, timeout=5, interval=0.01)
    await spool.start(FlakyRedis().write_raw)
    await until(lambda: not old.exists(), "the old one is removed")
    await spool.stop()
    assert fresh.exists()
