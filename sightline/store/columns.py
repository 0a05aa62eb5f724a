"""A batch's event rows held column by column: one list per ``events`` column.

The writer (``sightline.store.writer``) works on its batch's events in this form, not as
a dict per event: the columns are taken out of the canonical records (``Event`` structs)
in C (one ``msgspec.structs.astuple`` per event, transposed by ``zip``), and read a
column at a time by what needs them: the dimension columns
(``sightline.store.dimensions``), the events' JSON, the rollups
(``sightline.store.rollups``), SQLite's parameters (a list per column already) and
PostgreSQL's ``COPY`` (its rows: ``zip`` of the columns). What a
transaction sets in a row (its account, its session) is set in a column by the row's
index (``sightline.store.matching``, ``sightline.store.sessions``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from sightline.model import Event
from sightline.store.dimensions import dimension_columns
from sightline.store.schema import events

EVENT_COLUMNS = tuple(c.name for c in events.columns)
"""The ``events`` table's columns, in its order."""
JSON_COLUMNS = ("properties", "context")
"""The columns stored as JSON: :attr:`EventColumns.texts` holds their text."""
_FIELDS = tuple(field.name for field in msgspec.structs.fields(Event))
_json = msgspec.json.Encoder()


def json_texts(values: Iterable[Any]) -> list[str]:
    """Each value as JSON text (map: half the time of a comprehension calling
    ``.decode()``)."""
    return list(map(bytes.decode, map(_json.encode, values)))


class EventColumns:
    """Event rows, column by column: ``columns[name][i]`` is row ``i``'s value of
    ``name`` (every list as long as the others), and ``texts[name]`` the JSON text of each
    row's value of the JSON columns it holds (``properties``, ``context``)."""

    __slots__ = ("columns", "texts")

    def __init__(
        self, columns: dict[str, list[Any]], texts: dict[str, list[str]] | None = None
    ) -> None:
        self.columns = columns
        self.texts: dict[str, list[str]] = (
            texts
            if texts is not None
            else {name: json_texts(columns[name]) for name in JSON_COLUMNS if name in columns}
        )

    @classmethod
    def of(cls, events: Sequence[Event]) -> EventColumns:
        """The rows of ``events`` as the writer stores them: their fields (the type's
        value), the dimension columns of their contexts, and their JSON."""
        columns: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        if events:  # each event's fields in one call, then a list per field: all in C
            fields = zip(*map(msgspec.structs.astuple, events), strict=True)
            columns = dict(zip(_FIELDS, map(list, fields), strict=True))
        columns["type"] = list(map(operator.attrgetter("value"), columns["type"]))
        columns.update(dimension_columns(columns["context"]))
        return cls(columns)

    @classmethod
    def from_rows(
        cls, rows: Sequence[Mapping[str, Any]], names: Iterable[str] = EVENT_COLUMNS
    ) -> EventColumns:
        """Rows given as dicts (read back from the store, made by a test), their columns
        ``names`` only."""
        return cls({name: list(map(operator.itemgetter(name), rows)) for name in names})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    def keys(self) -> list[tuple[str, str]]:
        """Each row's (product, message id): what stores it once."""
        return list(zip(self.columns["product_id"], self.columns["message_id"], strict=True))

    def take(self, places: Iterable[int]) -> EventColumns:
        """The rows at ``places``, in that order, in lists of their own: what is set in
        them (an account, a session) is set in no other's."""
        at = list(places)
        if at == list(range(len(self))):  # every row, in order (most often)
            return self._each(list.copy)
        if len(at) < 2:  # (an itemgetter of one place gives the value, not a tuple)
            return self._each(lambda column: [column[i] for i in at])
        get = operator.itemgetter(*at)
        return self._each(lambda column: list(get(column)))

    def _each(self, pick: Callable[[list[Any]], list[Any]]) -> EventColumns:
        """``pick`` of each column (and each column's JSON texts)."""
        return EventColumns(
            {name: pick(column) for name, column in self.columns.items()},
            {name: pick(texts) for name, texts in self.texts.items()},
        )

    def __add__(self, other: EventColumns) -> EventColumns:
        """These rows, then ``other``'s (the same columns)."""
        return EventColumns(
            {name: column + other.columns[name] for name, column in self.columns.items()},
            {name: texts + other.texts[name] for name, texts in self.texts.items()},
        )

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (off the hot path: the live stream, tests)."""
        names = list(self.columns)
        values = zip(*self.columns.values(), strict=True)
        return [dict(zip(names, row, strict=True)) for row in values]
