"""The dashboard's files: built from their sources, served safely, nothing from elsewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from collector.endpoints.ui import CSP, ENDPOINTS

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
BUILT = ("ui.min.js", "ui.css")


def test_served_files_are_built_from_the_sources(tmp_path: Path) -> None:
    """``static/ui.min.js`` and ``static/ui.css`` are what ``npm run build:ui`` makes of
    ``static/ui/`` and uPlot now: an edit without a rebuild fails here."""
    node = shutil.which("node")
    assert node, "Node.js is needed for this test (see the README)"
    assert (ROOT / "node_modules" / "uplot").exists(), "run `npm ci`"
    subprocess.run([node, "static/ui/build.mjs", str(tmp_path)], cwd=ROOT, check=True, timeout=60)
    for name in BUILT:
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"static/{name} is stale: run `npm run build:ui`"
        )


def test_the_page_loads_nothing_from_another_origin() -> None:
    html = (STATIC / "ui.html").read_text()
    references = re.findall(r'(?:src|href|action)="([^"]*)"', html)
    assert references, "the page names its script and stylesheet"
    assert all(ref.startswith(("/", "#", "data:")) for ref in references), references
    script = (STATIC / "ui/dashboard.js").read_text()
    assert not re.search(r"https?://", script), "the script calls this origin only"


def test_page_and_assets_are_served_with_a_strict_policy() -> None:
    app = Starlette(routes=[endpoint.route() for endpoint in ENDPOINTS])
    with TestClient(app) as client:
        page = client.get("/ui")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.content == (STATIC / "ui.html").read_bytes()
        for path, name in (("/ui/app.js", "ui.min.js"), ("/ui/app.css", "ui.css")):
            response = client.get(path, headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            assert response.content == (STATIC / name).read_bytes()
            again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304
        plain = client.get("/ui/app.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
