"""``add_dimensions`` (the writer's, reading each shared context dict once) fills exactly
the columns :func:`dimensions` gives, in the same order, whatever the contexts hold."""

from __future__ import annotations

from typing import Any

from sightline.store.dimensions import MAX_DIMENSION, add_dimensions, dimensions


def test_add_dimensions_is_dimensions_of_each_context() -> None:
    shared_ua = {"browser_family": "Firefox", "os_family": "Linux", "device_type": "desktop"}
    shared_campaign = {"referrer_host": "t.co", "channel": "social", "source": "x"}
    contexts: list[dict[str, Any]] = [
        {},
        {"page": {"path": "/a?x=1#y"}},
        {"page": {"url": "https://shop.example/b?c=d"}, "ua": shared_ua},
        {"ua": shared_ua, "campaign": shared_campaign, "geo": {"country_code": "DE"}},
        {"campaign": shared_campaign, "geo": "nowhere", "ua": 5},
        {"campaign": {"source": "nul\x00", "name": "", "medium": 7}, "geo": {}},
        {"ua": {"browser_family": "B" * (MAX_DIMENSION + 10), "os_family": None}},
        {"page": "not a dict", "campaign": None},
    ]
    rows = [{"context": context, "id": n} for n, context in enumerate(contexts)]
    add_dimensions(rows)
    for row, context in zip(rows, contexts, strict=True):
        expected = {"context": context, "id": row["id"], **dimensions(context)}
        assert row == expected
        assert list(row) == list(expected)
