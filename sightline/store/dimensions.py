"""What the stats group by, copied out of an event's enriched context into its own columns.

The worker's enrichment (``worker/enricher.py``) leaves the page in ``context.page``,
the referrer's host, channel and UTM values in ``context.campaign``, the country in
``context.geo`` and the browser, OS and device type in ``context.ua``. Reading those
through JSON paths at query time differs between SQLite and PostgreSQL and cannot use
an index; the writer copies them into plain columns of ``events`` instead
(``sightline.store.schema.DIMENSION_COLUMNS``), once, when the event is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

MAX_DIMENSION = 255
"""Longest value kept in a dimension column (the context keeps the whole value)."""

# column -> (context key, key inside it)
_PATHS: dict[str, tuple[str, str]] = {
    "referrer_host": ("campaign", "referrer_host"),
    "channel": ("campaign", "channel"),
    "utm_source": ("campaign", "source"),
    "utm_medium": ("campaign", "medium"),
    "utm_campaign": ("campaign", "name"),
    "country": ("geo", "country_code"),
    "browser": ("ua", "browser_family"),
    "os": ("ua", "os_family"),
    "device_type": ("ua", "device_type"),
}


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_DIMENSION].replace("\x00", "\ufffd")


def page_path(context: dict[str, Any]) -> str | None:
    """``context.page.path``, else the path of ``context.page.url`` (no query, no fragment)."""
    page = context.get("page")
    if not isinstance(page, dict):
        return None
    path = page.get("path")
    if isinstance(path, str) and path:
        return _text(path.split("?", 1)[0].split("#", 1)[0] or "/")
    url = page.get("url")
    if not isinstance(url, str) or not url:
        return None
    try:
        return _text(urlsplit(url).path or "/")
    except ValueError:
        return None


def dimensions(context: dict[str, Any]) -> dict[str, str | None]:
    """The dimension columns of an event with this (enriched) context."""
    found: dict[str, str | None] = {"page_path": page_path(context)}
    for column, (outer, inner) in _PATHS.items():
        part = context.get(outer)
        found[column] = _text(part.get(inner)) if isinstance(part, dict) else None
    return found


# _PATHS by context key: (context key, (its columns), (the keys inside it)), in _PATHS' order
_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = tuple(
    (
        outer,
        tuple(column for column, (o, _) in _PATHS.items() if o == outer),
        tuple(inner for o, inner in _PATHS.values() if o == outer),
    )
    for outer in dict.fromkeys(o for o, _ in _PATHS.values())
)


def dimension_columns(contexts: Sequence[dict[str, Any]]) -> dict[str, list[str | None]]:
    """The dimension columns of events with these (enriched) contexts, column by column
    (in :func:`dimensions`' order): what ``sightline.store.columns`` stores with them.

    The enrichment shares one ``ua``, ``geo`` or ``campaign`` dict between the events of
    the same user agent, address or page (``worker/enricher.py``): each such dict is read
    once per call, by identity, while ``contexts`` keep every one of them alive (no id is
    reused before the call returns)."""
    found: dict[int, tuple[str | None, ...]] = {}
    columns: dict[str, list[str | None]] = {"page_path": list(map(page_path, contexts))}
    for outer, names, inner in _GROUPS:
        values: list[tuple[str | None, ...]] = []
        append = values.append
        none = _NONE[: len(names)]
        for context in contexts:
            part = context.get(outer)
            if isinstance(part, dict):
                got = found.get(id(part))
                if got is None:
                    got = found[id(part)] = tuple(_text(part.get(key)) for key in inner)
                append(got)
            else:
                append(none)
        transposed = zip(*values, strict=True) if values else [()] * len(names)
        columns.update(zip(names, map(list, transposed), strict=True))
    return columns


_NONE = (None,) * len(_PATHS)
