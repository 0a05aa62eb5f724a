"""``sightline up`` as a user runs it: a real process tree on embedded defaults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.harness import REDIS_TIMEOUT
from tests.load import Load, Stored, settle, tally
from tests.servers import free_port


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "GEOIP_DB")
    }
    env["SIGHTLINE_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["SIGHTLINE_REDIS_TIMEOUT"] = REDIS_TIMEOUT
    return env


@contextmanager
def sightline(
    data_dir: Path, *args: str, **env: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sightline", *args],
        env=clean_env(data_dir) | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def read_until(
    process: subprocess.Popen[str], lines: list[str], pattern: str, timeout: float = 30
) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; output so far:\n{''.join(lines)}")


def cli(data_dir: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "sightline", *args],
        env=clean_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def stored_names(data_dir: Path) -> list[str]:
    return [
        json.loads(line)["name"]
        for line in cli(data_dir, "events", "list", "--json", "--limit", "10000").splitlines()
    ]


def wait_for_names(data_dir: Path, expected: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sorted(stored_names(data_dir)) == sorted(expected):
            return
        time.sleep(0.2)
    raise AssertionError(f"stored {stored_names(data_dir)}, expected {expected}")


def stop(process: subprocess.Popen[str], lines: list[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"did not stop; output:\n{''.join(lines)}{exc.output}") from None
    lines.append(out)
    assert process.returncode == 0, "".join(lines)


def test_up_from_nothing_to_a_stored_event_and_a_clean_stop(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    untrusted = {"TRUSTED_PROXIES": "192.0.2.1"}  # 127.0.0.1's X-Forwarded-For is not believed
    with sightline(data_dir, "up", "--port", str(port), **untrusted) as (process, lines):
        key = read_until(process, lines, r"write key").split()[-1]
        read_until(process, lines, r"<script defer src=.*/s.js.*data-key=")
        read_until(process, lines, r"Collector on")
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/track",
            auth=(key, ""),
            json={"userId": "u1", "event": "Hello"},
            headers={"X-Forwarded-For": "203.0.113.9"},
            timeout=10,
        )
        assert response.status_code == 200
        wait_for_names(data_dir, ["Hello"])
        [stored] = map(
            json.loads, cli(data_dir, "events", "list", "--json", "--limit", "10000").splitlines()
        )
        assert stored["context"]["ip"] == "127.0.0.1", "up honours TRUSTED_PROXIES"
        read_until(process, lines, r"accepted 1\s+stored 1")
        stop(process, lines)
    output = "".join(lines)
    assert "Sightline stopped" in output
    assert "created product" in output
    assert not (data_dir / "redis.sock").exists(), "the embedded Redis was shut down"

    with sightline(data_dir, "up", "--port", str(port)) as (process, lines):
        assert key == read_until(process, lines, r"write key").split()[-1], (
            "same product on restart"
        )
        assert "using product" in "".join(lines)
        read_until(process, lines, r"Collector on")
        stop(process, lines)


def test_events_queued_while_no_worker_runs_survive_a_restart(tmp_path: Path) -> None:
    """The collector alone (its own embedded Redis) takes events; `up` later stores them."""
    data_dir, port = tmp_path / "data", free_port()
    assert "newest revision" in cli(data_dir, "migrate")  # the collector never migrates
    products = json.loads(cli(data_dir, "products", "create", "Site", "--json"))
    key = products["write_keys"][0]
    with sightline(data_dir, "collector", "--port", str(port)) as (process, lines):
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "collector did not come up"
            time.sleep(0.1)
        for name in ("one", "two", "three"):
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/track",
                auth=(key, ""),
                json={"userId": "u", "event": name},
                timeout=10,
            )
            assert response.status_code == 200
        stop(process, lines)
    assert stored_names(data_dir) == []
    assert (data_dir / "sightline.aof").exists() or any(data_dir.glob("appendonlydir/*"))
    with sightline(data_dir, "up", "--port", str(port)) as (process, lines):
        read_until(process, lines, r"Collector on")
        wait_for_names(data_dir, ["one", "two", "three"])
        stop(process, lines)


def worker_pids(parent: int) -> list[int]:
    """The ``sightline worker`` processes ``parent`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and cmdline[-3:-1] == [b"sightline", b"worker"]:
            found.append(int(entry.name))
    return sorted(found)


def live_workers(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["workers"])


def wait_until(check: object, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not (callable(check) and check()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)


def test_up_replaces_a_killed_worker(tmp_path: Path) -> None:
    """Issue 14, finding 2: a SIGKILLed worker used to stay dead until `up` restarted."""
    data_dir, port = tmp_path / "data", free_port()
    with sightline(data_dir, "up", "--port", str(port), "--workers", "2") as (process, lines):
        key = read_until(process, lines, r"write key").split()[-1]
        read_until(process, lines, r"Collector on")
        wait_until(lambda: live_workers(port) == 2, "two live workers")
        killed, survivor = worker_pids(process.pid)
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: len(worker_pids(process.pid)) == 2 and killed not in worker_pids(process.pid),
            "a new worker",
            timeout=5,
        )
        replaced_after = time.monotonic() - killed_at
        assert survivor in worker_pids(process.pid)
        wait_until(lambda: live_workers(port) == 2, "the new worker alive in /health")
        for name in ("after", "the", "kill"):
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/track",
                auth=(key, ""),
                json={"userId": "u", "event": name},
                timeout=10,
            )
            assert response.status_code == 200
        wait_for_names(data_dir, ["after", "the", "kill"])
        stop(process, lines)
    assert replaced_after < 3, replaced_after
    assert "exited (-9); starting another" in "".join(lines)


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody reaped yet has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if ppid == parent:
                found.append(int(entry.name))
    return found


def test_up_with_two_collectors_and_two_workers(tmp_path: Path) -> None:
    """Issue 12, item 4: one command uses the machine; SIGTERM stops all, nothing is lost."""
    data_dir, port = tmp_path / "data", free_port()
    args = ("up", "--port", str(port), "--collectors", "2", "--workers", "2")
    with sightline(data_dir, *args) as (process, lines):
        key = read_until(process, lines, r"write key").split()[-1]
        read_until(process, lines, r"Collector on")
        wait_until(lambda: len(children(process.pid)) >= 4, "2 collectors and 2 workers")
        names = [f"e{i}" for i in range(60)]
        with httpx.Client(timeout=10) as client:  # new connections: both collectors serve
            for name in names:
                response = client.post(
                    f"http://127.0.0.1:{port}/v1/track",
                    auth=(key, ""),
                    json={"userId": "u", "event": name},
                    headers={"Connection": "close"},
                )
                assert response.status_code == 200
        wait_for_names(data_dir, names, timeout=30)
        spawned = children(process.pid)
        stop(process, lines)
    # multiprocessing's resource tracker ends on its own once up's pipe closes: not at once
    wait_until(lambda: not [pid for pid in spawned if running(pid)], "every child stopped", 15)


def test_a_killed_up_takes_its_workers_and_redis_with_it(tmp_path: Path) -> None:
    """Without a supervisor nothing would stop them: they ask for SIGTERM when it dies."""
    data_dir, port = tmp_path / "data", free_port()
    with sightline(data_dir, "up", "--port", str(port), "--workers", "1") as (process, lines):
        read_until(process, lines, r"Collector on")
        spawned = children(process.pid)
        assert len(spawned) >= 2  # the worker and the embedded Redis
        process.kill()
        process.wait(10)
        wait_until(lambda: not [pid for pid in spawned if running(pid)], "every child gone", 30)


def redis_child(parent: int) -> int | None:
    for pid in children(parent):
        try:
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes() and running(pid):
                return pid
        except OSError:
            continue
    return None


def test_up_restarts_its_killed_redis_under_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The embedded Redis SIGKILLed mid-load: `up` starts it again on its append-only
    file; every event answered 2xx is stored exactly once."""
    data_dir, port = tmp_path / "data", free_port()
    with sightline(data_dir, "up", "--port", str(port), "--workers", "1") as (process, lines):
        key = read_until(process, lines, r"write key").split()[-1]
        read_until(process, lines, r"Collector on")
        wait_until(lambda: live_workers(port) == 1, "a live worker")
        first = redis_child(process.pid)
        assert first is not None
        # Read up's output from now on (workers' tracebacks too): a full pipe would stall it.
        assert process.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
        reader.start()
        total = 2000
        load = Load(f"http://127.0.0.1:{port}", key, total, per_request=4)
        load.start()
        wait_until(lambda: load.answered >= total // 3, "a third of the load answered", 40)
        killed_at = load.answered
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: redis_child(process.pid) not in (None, first), "a new redis-server")
        load.join(60)
        redis = Redis(unix_socket_path=str(data_dir / "redis.sock"), socket_timeout=5)
        stored = Stored(f"sqlite:///{data_dir / 'sightline.db'}")
        try:
            ids = settle(load, stored, redis, 45)
        finally:
            redis.close()
            stored.engine.dispose()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        reader.join(10)
    lost, duplicated, unknown, refused_stored = tally(load, ids)
    with capsys.disabled():
        print(
            f"\n[up: Redis SIGKILL at event ~{killed_at} of {total}] {len(load.acknowledged)} "
            f"acknowledged, {len(set(ids))} stored ({refused_stored} of them answered "
            f"otherwise), refused {dict(load.refused)}; lost {lost}, duplicated {duplicated}"
        )
    assert (lost, duplicated, unknown) == (0, 0, 0)
    assert "redis-server exited (-9); starting it again" in "".join(lines)
