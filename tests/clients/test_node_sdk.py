"""@segment/analytics-node, unmodified (from node_modules), against a real collector.

What a user changes: ``host`` (the collector's base URL) and the write key; ``path``
stays ``/v1/batch``. The SDK is driven by ``segment_node.cjs`` in a node process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.live import LiveCollector
from tests.clients.scenario import Script, check_stored

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "node_modules" / "@segment" / "analytics-node" / "package.json"


def test_segment_analytics_node(live: LiveCollector) -> None:
    node = shutil.which("node")
    if node is None or not PACKAGE.exists():
        pytest.skip("node or node_modules/@segment/analytics-node missing (npm ci)")
    assert json.loads(PACKAGE.read_text())["version"] == "3.1.0"
    script = Script("segment-node")
    run = subprocess.run(
        [
            node,
            str(Path(__file__).with_name("segment_node.cjs")),
            live.url,
            live.server_key,  # a server SDK: the server key
            script.sdk,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
    stored = check_stored(live, script, anonymous_id=f"anon-{script.sdk}", server_key=True)
    assert stored["track"].context["library"]["name"] == "@segment/analytics-node"
