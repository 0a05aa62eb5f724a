"""``dimension_columns`` (the writer's, reading each shared context dict once, column by
column) gives exactly the columns :func:`dimensions` gives of each context, in the same
order, whatever the contexts hold."""

from __future__ import annotations

from typing import Any

from sightline.store.dimensions import MAX_DIMENSION, dimension_columns, dimensions


def test_dimension_columns_are_dimensions_of_each_context() -> None:
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
    columns = dimension_columns(contexts)
    values = zip(*columns.values(), strict=True)
    rows = [dict(zip(columns, row, strict=True)) for row in values]
    assert len(rows) == len(contexts)
    for row, context in zip(rows, contexts, strict=True):
        assert row == dimensions(context)
        assert list(row) == list(dimensions(context))


def test_no_contexts_no_values() -> None:
    assert dimension_columns([]) == {name: [] for name in dimensions({})}
