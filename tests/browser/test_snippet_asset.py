"""The served snippet: its size budget and how collector/snippet.py serves it."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from collector.snippet import (
    SNIPPET_FILE,
    SnippetAsset,
    accepts_gzip,
    assets_state,
    serve_extension_module,
    serve_snippet,
)
from tests.browser.support import STATIC

SIZE_BUDGET = 2048  # bytes, minified and gzipped: issue 3, item 1
ROOT = STATIC.parent
TERSER = ROOT / "node_modules" / ".bin" / "terser"


def test_snippet_fits_the_size_budget() -> None:
    asset = assets_state()["snippet"]
    source = (STATIC / "sightline.js").read_bytes()
    print(
        f"\nsightline.js: source {len(source)} B, minified {len(asset.body)} B, "
        f"served gzipped {asset.gzipped_size} B (budget {SIZE_BUDGET} B)"
    )
    assert asset.gzipped_size <= SIZE_BUDGET


def test_served_snippet_is_built_from_the_source(tmp_path: Path) -> None:
    """``static/sightline.min.js`` is what ``npm run build`` makes of ``sightline.js``
    now: an edit to the source without a rebuild fails here."""
    assert TERSER.exists(), "terser is not installed: run `npm ci` (see the README)"
    built = tmp_path / SNIPPET_FILE
    subprocess.run(
        [str(TERSER), "static/sightline.js", "--config-file", "terser.config.json", "-o", built],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    committed = (STATIC / SNIPPET_FILE).read_bytes()
    assert built.read_bytes() == committed, "static/sightline.min.js is stale: run `npm run build`"


ASSETS = assets_state()


@pytest.fixture
def client() -> Iterator[TestClient]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, SnippetAsset]]:
        yield ASSETS

    app = Starlette(
        routes=[
            Route("/s.js", serve_snippet),
            Route("/sightline-ext.js", serve_extension_module),
        ],
        lifespan=lifespan,
    )
    with TestClient(app) as client:
        yield client


def test_served_gzipped_with_validators(client: TestClient) -> None:
    response = client.get("/s.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300, stale-while-revalidate=86400"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"].endswith('-gz"')
    asset: SnippetAsset = ASSETS["snippet"]
    assert response.content == asset.body  # httpx decoded the gzip body
    assert gzip.decompress(asset.gzipped) == asset.body


def test_identity_when_gzip_is_not_accepted(client: TestClient) -> None:
    response = client.get("/s.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in response.headers
    assert response.headers["etag"] == ASSETS["snippet"].etag
    assert b"sightline.js" in response.content


def test_revalidation_answers_304(client: TestClient) -> None:
    first = client.get("/s.js")
    etag = first.headers["etag"]
    again = client.get("/s.js", headers={"If-None-Match": f'W/{etag}, "other"'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"].startswith("public, max-age=300")
    changed = client.get("/s.js", headers={"If-None-Match": '"an-older-release"'})
    assert changed.status_code == 200


def test_etag_and_gzip_follow_the_content() -> None:
    one = SnippetAsset.from_source("console.log(1)")
    same = SnippetAsset.from_source("console.log(1)")
    other = SnippetAsset.from_source("console.log(2)")
    assert one.etag == same.etag and one.gzipped == same.gzipped  # deterministic
    assert one.etag != other.etag and one.gzip_etag != other.gzip_etag
    assert gzip.decompress(one.gzipped) == b"console.log(1)"


def test_extension_module_is_served_readable(client: TestClient) -> None:
    response = client.get("/sightline-ext.js")
    assert response.status_code == 200
    assert b"export function init" in response.content
    assert b"\n" in response.content  # not minified: extension stores review the code


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("gzip", True, id="gzip"),
        pytest.param("br, gzip;q=0.8", True, id="weighted"),
        pytest.param("gzip;q=0", False, id="refused"),
        pytest.param("*", True, id="any"),
        pytest.param("*, gzip;q=0", False, id="any-but-gzip"),
        pytest.param("identity", False, id="identity"),
        pytest.param("", False, id="none"),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected
