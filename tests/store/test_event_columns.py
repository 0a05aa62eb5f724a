"""``EventColumns``: a batch's event rows column by column, as the writer stores them.
Made from the events, each row is the event's fields (its type's value), the dimension
columns of its context and the JSON text of its properties and context; rows taken out
of it (by place, in any order) or put together with others are those rows, in lists of
their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from sightline.model import Event, EventType
from sightline.store.columns import EVENT_COLUMNS, EventColumns
from sightline.store.dimensions import dimensions

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UA = {"browser_family": "Firefox", "os_family": "Linux", "device_type": "desktop"}


def _events(count: int) -> list[Event]:
    made = []
    for n in range(count):
        context: dict[str, Any] = {"page": {"url": f"https://shop.example/p{n % 3}?q=1"}}
        if n % 2:
            context["ua"] = UA  # shared, as the enrichment shares it
            context["geo"] = {"country_code": "DE"}
        made.append(
            Event(
                id=f"e{n}",
                message_id=f"m{n}",
                product_id="p",
                name="Home",
                type=EventType.PAGE if n % 2 else EventType.TRACK,
                timestamp=START + timedelta(minutes=n),
                received_at=START,
                user_id=f"u{n}" if n % 3 else None,
                properties={"n": n, "text": "é'\\"},
                context=context,
                is_bot=n == 4,
            )
        )
    return made


def _row(event: Event) -> dict[str, Any]:
    """The event's row as the writer stored a dict per event before."""
    row = msgspec.structs.asdict(event)
    row["type"] = event.type.value
    row.update(dimensions(event.context))
    return row


def test_the_columns_of_events_are_their_rows() -> None:
    made = _events(7)
    rows = EventColumns.of(made)
    assert len(rows) == 7
    assert sorted(rows.columns) == sorted(EVENT_COLUMNS)
    assert rows.rows() == [_row(event) for event in made]
    assert [list(row) for row in rows.rows()] == [list(_row(event)) for event in made]
    for name in ("properties", "context"):
        expected = [msgspec.json.encode(getattr(e, name)).decode() for e in made]
        assert rows.texts[name] == expected
    assert rows.keys() == [("p", f"m{n}") for n in range(7)]


def test_no_events_no_rows() -> None:
    rows = EventColumns.of([])
    assert len(rows) == 0 and rows.rows() == [] and rows.keys() == []
    assert sorted(rows.columns) == sorted(EVENT_COLUMNS)
    assert rows.take([]).rows() == []


def test_rows_taken_are_those_rows_in_lists_of_their_own() -> None:
    made = _events(6)
    rows = EventColumns.of(made)
    for places in ([0, 1, 2, 3, 4, 5], [5, 3, 1], [2], []):
        taken = rows.take(places)
        assert taken.rows() == [_row(made[i]) for i in places]
        assert taken.texts["context"] == [rows.texts["context"][i] for i in places]
        for name, column in taken.columns.items():
            assert column is not rows[name]
        if places:
            taken["session_id"][0] = "set in the taken rows"
    assert rows["session_id"] == [None] * 6


def test_rows_put_together_are_both_in_order() -> None:
    made = _events(5)
    first, second = EventColumns.of(made[:2]), EventColumns.of(made[2:])
    both = first + second
    assert both.rows() == [_row(event) for event in made]
    assert both.texts == EventColumns.of(made).texts
    assert len(first) == 2 and len(second) == 3


def test_rows_given_as_dicts() -> None:
    made = _events(3)
    dicts = [_row(event) for event in made]
    rows = EventColumns.from_rows(dicts)
    assert rows.rows() == [{name: row[name] for name in EVENT_COLUMNS} for row in dicts]
    assert rows.texts == EventColumns.of(made).texts
    some = EventColumns.from_rows(dicts, ("id", "user_id"))
    assert some.columns == {"id": ["e0", "e1", "e2"], "user_id": [None, "u1", "u2"]}
    assert some.texts == {}
