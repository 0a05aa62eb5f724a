"""``collector.assets.static_file``: the files of ``static/`` (in a wheel: tests/test_wheel.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.assets import static_file

STATIC = Path(__file__).resolve().parent.parent.parent / "static"


def test_reads_the_files_of_static() -> None:
    names = [path.name for pattern in ("*.js", "*.html") for path in STATIC.glob(pattern)]
    assert "sightline.min.js" in names
    for name in names:
        assert static_file(name) == (STATIC / name).read_bytes(), name


@pytest.mark.parametrize("name", ["", "../pyproject.toml", "sub/x.js", "..\\x.js", ".hidden"])
def test_refuses_names_outside_static(name: str) -> None:
    with pytest.raises(FileNotFoundError):
        static_file(name)


def test_a_missing_file_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        static_file("no-such-file.js")
