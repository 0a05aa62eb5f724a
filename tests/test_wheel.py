"""``pip install .`` without ``-e``: the wheel ships ``static/`` and the collector serves it.

The wheel is built from a copy of the checkout (setuptools reuses a ``build/`` folder
in the source tree, and a stale one would put modules that no longer exist into the
wheel; the copy also keeps the test from writing into the checkout) and installed with
``--no-deps`` into a throwaway venv that reaches the dependencies through a ``.pth``
file naming this interpreter's site-packages: nothing is downloaded but the build
backend pip fetches for any build, as ``pip install -e .`` does. A ``.pth`` line only
adds a folder to ``sys.path``; the ``.pth`` files inside that folder (the editable
install's finder among them) are not run, so ``collector`` and ``sightline_static`` can
only come from the wheel. ``sightline up`` then runs from that venv, in a folder outside
the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
STATIC = REPO / "static"
SHIPPED = ("*.js", "*.html", "*.css")
"""What pyproject.toml's package data ships of ``static/``."""
SERVED = {
    "/s.js": "sightline.min.js",
    "/sightline-ext.js": "sightline-ext.js",
    "/ui": "ui.html",
    "/ui/app.js": "ui.min.js",
    "/ui/app.css": "ui.css",
}
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "sightline-data",
)

PROBE = """
import hashlib, json, sys
import collector, sightline_static
from collector.assets import static_file
print(json.dumps({
    "collector": collector.__file__,
    "static": sightline_static.__file__,
    "files": {name: hashlib.sha256(static_file(name)).hexdigest() for name in sys.argv[1:]},
}))
"""


def run(args: list[str | Path], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    dropped = ("PYTHONPATH", "PYTHONHOME", "REDIS_URL", "DATABASE_URL", "GEOIP_DB")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source], tmp_path, 180
    )
    [wheel] = dist.glob("sightline-*.whl")
    return wheel


def throwaway_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, timeout=60)
    python = venv / "bin" / "python"
    purelib = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=tmp_path,
        timeout=30,
    ).strip()
    dependencies = "".join(f"{folder}\n" for folder in site.getsitepackages())
    (Path(purelib) / "sightline_test_dependencies.pth").write_text(dependencies)
    pip_install: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install"]
    run([*pip_install, "--no-deps", "--no-index", "-q", wheel], cwd=tmp_path, timeout=120)
    return venv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_installed_wheel_serves_the_static_files(tmp_path: Path) -> None:
    venv = throwaway_venv(tmp_path, build_wheel(tmp_path))
    workdir = tmp_path / "run"
    workdir.mkdir()

    shipped = sorted(path.name for pattern in SHIPPED for path in STATIC.glob(pattern))
    assert "sightline.min.js" in shipped and "sightline-ext.js" in shipped
    probe = json.loads(run([venv / "bin" / "python", "-c", PROBE, *shipped], workdir, 60))
    assert Path(probe["collector"]).is_relative_to(venv), probe["collector"]
    assert Path(probe["static"]).is_relative_to(venv), probe["static"]
    assert probe["files"] == {name: sha256(STATIC / name) for name in shipped}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [venv / "bin" / "sightline", "up", "--port", str(port)],
            cwd=workdir,
            env=clean_env(SIGHTLINE_DATA_DIR=str(workdir / "data")),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"sightline up exited:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not up in 60 s:\n{log_path.read_text()}"
            time.sleep(0.1)

        for url_path, name in SERVED.items():
            response = httpx.get(base + url_path, timeout=10)
            assert response.status_code == 200, (url_path, log_path.read_text())
            assert response.content == (STATIC / name).read_bytes(), url_path

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
        assert "Sightline stopped" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
