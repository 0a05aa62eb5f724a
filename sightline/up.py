"""``sightline up``: Redis, store, worker and collector on one machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import click
import uvicorn
from redis.exceptions import RedisError
from uvicorn.supervisors import Multiprocess

from collector.app import create_app
from collector.server import BoundedHttpToolsProtocol
from sightline.children import stop_with_parent
from sightline.dashboard import LOGIN_CODE_TTL, dashboard_link
from sightline.embedded import prepare_redis
from sightline.preflight import check_redis, check_spool, open_store
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.signals import stop_on_sigterm
from sightline.status import read_status
from sightline.store.products import Product, ensure_default_product


def print_welcome(product: Product, created: bool, host: str, port: int) -> None:
    origin = f"http://{host}:{port}"
    verb = "created" if created else "using"
    click.echo(f"Sightline: {verb} product {product.name!r} ({product.id})")
    click.echo(f"  write key  (public, for pages):   {product.write_keys[0]}")
    click.echo(f"  server key (secret, for servers): {product.server_keys[0]}")
    click.echo("  paste into your pages:")
    click.echo(
        f'    <script defer src="{origin}/s.js" data-key="{product.write_keys[0]}"></script>'
    )
    click.echo("  or send an event:")
    click.echo(
        f"    curl -u {product.write_keys[0]}: {origin}/v1/track "
        """-H 'Content-Type: application/json' -d '{"userId":"u1","event":"Hello"}'"""
    )


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["SIGHTLINE_DATA_DIR"] = str(settings.data_dir)
    env["REDIS_URL"] = settings.redis_url or ""
    env["DATABASE_URL"] = settings.sqlalchemy_url
    env["SIGHTLINE_QUEUE"] = settings.queue_name
    return env


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def status_loop(
    settings: Settings,
    started: Callable[[], bool],
    stop: threading.Event,
    interval: float = 1.0,
) -> None:
    """Say when the collector listens, then print the status when it changes."""
    while not started():
        if stop.wait(0.05):
            return
    click.echo(f"Collector on http://{settings.host}:{settings.port}  (Ctrl-C stops everything)")
    redis = connect(settings, timeout=1.0)
    tty = sys.stdout.isatty()
    last = ""
    try:
        while not stop.wait(interval):
            try:
                line = read_status(redis, settings.queue_name).line()
            except (RedisError, OSError) as exc:
                line = f"redis unavailable: {exc}"
            if line != last:  # at most once a second, and only when something changed
                click.echo(("\r" + line.ljust(90)) if tty else line, nl=not tty)
                last = line
    finally:
        redis.close()
        if tty:
            click.echo()


def run_up(settings: Settings) -> None:
    # SIGTERM at any moment, even during start-up, stops the worker and Redis in order.
    with stop_on_sigterm():
        _run_up(settings)
    click.echo("Sightline stopped; queued events stay in Redis's append-only file for next start.")


def _run_up(settings: Settings) -> None:
    with ExitStack() as stack:
        settings = prepare_redis(settings, stack, supervise=True)
        check_redis(settings)
        check_spool(settings)
        engine = open_store(settings, migrate=True)  # `up` migrates, like `sightline migrate`
        with engine.begin() as conn:
            product, created = ensure_default_product(conn)
        link = dashboard_link(settings, engine)
        engine.dispose()
        print_welcome(product, created, settings.host, settings.port)
        minutes = LOGIN_CODE_TTL // 60
        click.echo(f"  dashboard (the link logs in once, within {minutes} minutes): {link}")

        workers = WorkerPool(settings.worker_count, worker_env(settings))
        workers.start()
        stack.callback(workers.stop)
        stop = threading.Event()
        serve, started = collector_server(settings)
        status = threading.Thread(target=status_loop, args=(settings, started, stop), daemon=True)
        status.start()
        stack.callback(status.join, 3)
        stack.callback(stop.set)
        serve()


def _uvicorn(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "log_level": "warning",
        "access_log": False,
        "http": BoundedHttpToolsProtocol,  # head size and read-time limits
    }


def collector_server(settings: Settings) -> tuple[Callable[[], None], Callable[[], bool]]:
    """How to serve the collector (``sightline up`` and ``sightline collector``): a function
    that serves until stopped, and one that says whether it listens yet."""
    if settings.collectors > 1:
        return _collector_processes(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **_uvicorn(settings)))
    return server.run, lambda: server.started


def _collector_processes(settings: Settings) -> tuple[Callable[[], None], Callable[[], bool]]:
    """``settings.collectors`` processes sharing one listening socket (uvicorn's supervisor:
    a collector that dies is replaced). Each builds its app from the environment, which
    is made to say what ``up`` resolved (the embedded Redis, the store)."""
    os.environ.update(worker_env(settings))
    config = uvicorn.Config(
        "collector.app:create_app",
        factory=True,
        workers=settings.collectors,
        **_uvicorn(settings),
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    return supervisor.run, lambda: listening(settings.host, settings.port)


class WorkerPool:
    """``count`` worker processes, each restarted when it dies (SIGKILL, OOM, a crash).

    Each runs in its own session: a terminal's Ctrl-C reaches only ``up``, which sends
    each worker exactly one SIGTERM (a second signal would make RQ abandon the job in
    hand). A worker that dies is replaced within ``interval``; one that keeps dying
    at start (a bad configuration) is retried at most every ``MAX_BACKOFF`` seconds.
    The job a dead worker held is requeued by the others' recovery sweep.
    """

    MAX_BACKOFF = 10.0

    def __init__(self, count: int, env: dict[str, str], interval: float = 0.5) -> None:
        self._env = env
        self._interval = interval
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._started_at = [0.0] * count
        self._failures = [0] * count
        self._restart_at: list[float | None] = [None] * count
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-pool", daemon=True)

    def start(self) -> None:
        for slot in range(len(self._processes)):
            self._spawn(slot)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        self._processes[slot] = subprocess.Popen(
            [sys.executable, "-m", "sightline", "worker"],
            env=self._env,
            start_new_session=True,
            preexec_fn=stop_with_parent(),
        )
        self._started_at[slot] = time.monotonic()
        self._restart_at[slot] = None

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            now = time.monotonic()
            for slot, process in enumerate(self._processes):
                if process is None or process.poll() is None or self._stopping.is_set():
                    continue
                if self._restart_at[slot] is None:  # just found dead
                    quick = now - self._started_at[slot] < 5
                    self._failures[slot] = self._failures[slot] + 1 if quick else 0
                    delay = min(self.MAX_BACKOFF, 0.5 * 2 ** self._failures[slot]) if quick else 0
                    self._restart_at[slot] = now + delay
                    click.echo(
                        f"worker {process.pid} exited ({process.returncode}); "
                        f"starting another in {delay:.1f} s",
                        err=True,
                    )
                if now >= (self._restart_at[slot] or 0):
                    self._spawn(slot)

    def stop(self) -> None:
        """SIGTERM is RQ's warm shutdown: the job in hand finishes, the rest stays queued."""
        self._stopping.set()
        self._thread.join(5)
        running = [p for p in self._processes if p is not None and p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
