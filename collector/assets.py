"""The files of ``static/``, read the same way from a checkout and from a wheel.

``static/`` is installed as the package ``sightline_static`` (see ``setup.py``), so
``importlib.resources`` finds it in an editable install (the repository's folder) and
in an installed wheel (site-packages) alike; nothing here knows where the repository is.
"""

from __future__ import annotations

from importlib.resources import files

STATIC_PACKAGE = "sightline_static"


def static_file(name: str) -> bytes:
    """The bytes of ``static/<name>``, e.g. ``static_file("sightline.min.js")``.

    Only files directly in ``static/`` that the wheel ships: ``*.js``, ``*.html``, ``*.css``
    (pyproject.toml's package data). Raises ``FileNotFoundError`` for any other name.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise FileNotFoundError(f"not a file of static/: {name!r}")
    try:
        folder = files(STATIC_PACKAGE)
    except ModuleNotFoundError as exc:  # an editable install made before the mapping
        raise FileNotFoundError(
            f"package {STATIC_PACKAGE} (static/) is not installed: run `pip install -e .` again"
        ) from exc
    return folder.joinpath(name).read_bytes()
