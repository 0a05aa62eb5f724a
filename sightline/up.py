"""``sightline up``: Redis, store, worker and collector on one machine."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import ExitStack

import click
import uvicorn
from redis.exceptions import RedisError

from collector.app import create_app
from collector.server import BoundedHttpToolsProtocol
from sightline.embedded import EmbeddedRedis
from sightline.preflight import check_redis, open_store
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.signals import stop_on_sigterm
from sightline.status import read_status
from sightline.store.products import Product, ensure_default_product


def prepare_redis(settings: Settings, stack: ExitStack) -> Settings:
    """With no REDIS_URL, the embedded server of the data dir (started unless running,
    with ``settings.fsync``)."""
    if settings.redis_url:
        return settings
    embedded = stack.enter_context(EmbeddedRedis(settings.data_dir, fsync=settings.fsync))
    return settings.with_changes(redis_url=embedded.url)


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


def status_loop(
    settings: Settings, server: uvicorn.Server, stop: threading.Event, interval: float = 1.0
) -> None:
    """Say when the collector listens, then print the status when it changes."""
    while not server.started:
        if stop.wait(0.05):
            return
    click.echo(
        f"Collector on http://{server.config.host}:{server.config.port}  (Ctrl-C stops everything)"
    )
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
        settings = prepare_redis(settings, stack)
        check_redis(settings)
        engine = open_store(settings, migrate=True)  # `up` migrates, like `sightline migrate`
        with engine.begin() as conn:
            product, created = ensure_default_product(conn)
        engine.dispose()
        print_welcome(product, created, settings.host, settings.port)

        # Its own session: a terminal's Ctrl-C reaches only us, and we send the worker
        # exactly one SIGTERM (a second signal would make RQ abandon the job in hand).
        worker = subprocess.Popen(
            [sys.executable, "-m", "sightline", "worker"],
            env=worker_env(settings),
            start_new_session=True,
        )
        stack.callback(_stop_process, worker)
        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            proxy_headers=True,
            forwarded_allow_ips=settings.trusted_proxies,
            log_level="warning",
            access_log=False,
            http=BoundedHttpToolsProtocol,  # head size and read-time limits
        )
        server = uvicorn.Server(config)
        stop = threading.Event()
        status = threading.Thread(target=status_loop, args=(settings, server, stop), daemon=True)
        status.start()
        stack.callback(status.join, 3)
        stack.callback(stop.set)
        server.run()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM is RQ's warm shutdown: the job in hand finishes, the rest stays queued."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
