"""Every typed profile operation through the writer, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.model import (
    AttributeOp,
    AttributeOpKind,
    AttributeType,
    Event,
    EventType,
    Normalised,
    UserChange,
)
from sightline.store.db import make_engine
from sightline.store.products import create_product
from sightline.store.schema import user_attributes, users
from sightline.store.writer import write_batch

SET, REMOVE, INC = AttributeOpKind.SET, AttributeOpKind.REMOVE, AttributeOpKind.INCREMENT
ADD, DROP = AttributeOpKind.ADD_TO_ARRAY, AttributeOpKind.REMOVE_FROM_ARRAY
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Store:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        with self.engine.begin() as conn:
            self.product = create_product(conn, "P").id
        self.n = 0

    def change(self, *ops: AttributeOp, user: str = "u", at: datetime = T0) -> None:
        self.n += 1
        event = Event(
            id=f"e{self.n:04d}",
            message_id=f"m{self.n}",
            product_id=self.product,
            name="identify",
            type=EventType.IDENTIFY,
            timestamp=at,
            received_at=at,
            user_id=user,
        )
        item = Normalised(events=(event,), users=(UserChange(external_id=user, ops=ops),))
        with self.engine.begin() as conn:
            write_batch(conn, [item])

    def attributes(self, user: str = "u") -> dict[str, tuple[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(user_attributes.c.name, user_attributes.c.type, user_attributes.c.value)
                .join(users, users.c.id == user_attributes.c.user_id)
                .where(users.c.external_id == user)
            )
            return {r.name: (r.type, r.value) for r in rows}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.engine.dispose()


def op(
    name: str, kind: AttributeOpKind, value: Any = None, type: AttributeType | None = None
) -> AttributeOp:
    return AttributeOp(name=name, kind=kind, value=value, type=type)


def test_set_every_type(store: Store) -> None:
    store.change(
        op("vip", SET, True),
        op("plan", SET, "pro"),
        op("seats", SET, 3),
        op("score", SET, 4.5),
        op("born", SET, date(1994, 7, 6)),
        op("since", SET, datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
        op("tags", SET, ["a", "b"]),
        op("address", SET, {"city": "Oslo"}),
        op("zip", SET, "0150", AttributeType.STRING),
    )
    assert store.attributes() == {
        "vip": ("bool", True),
        "plan": ("string", "pro"),
        "seats": ("integer", 3),
        "score": ("float", 4.5),
        "born": ("date", "1994-07-06"),
        "since": ("date", "2020-01-02T03:04:05+00:00"),
        "tags": ("array", ["a", "b"]),
        "address": ("object", {"city": "Oslo"}),
        "zip": ("string", "0150"),
    }


def test_remove_by_op_and_by_setting_null(store: Store) -> None:
    store.change(op("a", SET, 1), op("b", SET, "x"), op("c", SET, True))
    store.change(op("a", REMOVE), op("b", SET, None))
    assert store.attributes() == {"c": ("bool", True)}


def test_set_once_never_overwrites(store: Store) -> None:
    once = AttributeOpKind.SET_ONCE
    store.change(op("first", once, "a"), op("first", once, "b"), op("none", once, None))
    store.change(op("first", once, "c"), op("later", once, 1))
    store.change(op("first", REMOVE))
    store.change(op("first", once, "d"))  # absent again: set
    assert store.attributes() == {"first": ("string", "d"), "later": ("integer", 1)}


def test_increment(store: Store) -> None:
    store.change(op("logins", INC, 1))  # from nothing
    store.change(op("logins", INC, 2))
    store.change(op("balance", SET, 10), op("balance", INC, 0.5))  # integer + float
    store.change(op("logins", INC, -1))
    assert store.attributes() == {"logins": ("integer", 2), "balance": ("float", 10.5)}


def test_add_to_and_remove_from_arrays(store: Store) -> None:
    store.change(op("tags", ADD, ["a", "b"]))
    store.change(op("tags", ADD, ["b", "c"]), op("tags", ADD, "d"))  # no duplicates
    store.change(op("tags", DROP, ["a", "zzz"]))
    assert store.attributes() == {"tags": ("array", ["b", "c", "d"])}


def test_ops_that_do_not_fit_are_skipped_and_the_rest_applied(store: Store) -> None:
    store.change(op("plan", SET, "pro"), op("tags", SET, ["a"]))
    store.change(op("plan", INC, 1), op("plan", ADD, ["x"]), op("tags", ADD, ["b"]))
    assert store.attributes() == {"plan": ("string", "pro"), "tags": ("array", ["a", "b"])}


def test_first_seen_last_seen_and_event_count(store: Store) -> None:
    store.change(at=T0 + timedelta(hours=1))
    store.change(at=T0)
    store.change(at=T0 + timedelta(hours=5))
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.external_id == "u")).one()
    first = row.first_seen.replace(tzinfo=UTC) if row.first_seen.tzinfo is None else row.first_seen
    last = row.last_seen.replace(tzinfo=UTC) if row.last_seen.tzinfo is None else row.last_seen
    assert (first, last, row.event_count) == (T0, T0 + timedelta(hours=5), 3)


def _attribute_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                user_attributes.c.name,
                user_attributes.c.type,
                user_attributes.c.value,
                user_attributes.c.updated_at,
            )
        )
        return {r.name: tuple(r) for r in rows}


def test_a_value_sent_again_unchanged_writes_nothing(store: Store) -> None:
    store.change(op("plan", SET, "pro"), op("seats", SET, 3), op("score", SET, 1.0))
    before = _attribute_rows(store)
    # The same values again (1 is not 1.0: the type of the number changes): only what
    # differs from the stored row is written (updated_at tells).
    store.change(op("plan", SET, "pro"), op("seats", SET, 3), op("score", SET, 1))
    after = _attribute_rows(store)
    assert after["plan"] == before["plan"] and after["seats"] == before["seats"]
    assert after["score"][1:3] == ("integer", 1) and after["score"][3] > before["score"][3]


def test_the_skip_compares_with_the_stored_row_not_with_what_was_written(store: Store) -> None:
    store.change(op("plan", SET, "pro"), op("tags", SET, ["a"]))
    # Changed behind the writer's back (another worker, an operator, a restore).
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(user_attributes).where(user_attributes.c.name == "plan").values(value="free")
        )
        conn.execute(sa.delete(user_attributes).where(user_attributes.c.name == "tags"))
    store.change(op("plan", SET, "pro"), op("tags", SET, ["a"]))
    assert store.attributes() == {"plan": ("string", "pro"), "tags": ("array", ["a"])}
    # Removing what is not stored (any more) deletes nothing and fails nothing.
    with store.engine.begin() as conn:
        conn.execute(sa.delete(user_attributes).where(user_attributes.c.name == "plan"))
    store.change(op("plan", REMOVE), op("tags", SET, None))
    assert store.attributes() == {}


def test_a_write_the_database_refuses_is_a_data_error_and_the_store_goes_on(
    store: Store,
) -> None:
    """PostgreSQL sends a batch's user writes in one pipeline: a refused one (a name
    longer than the column) still fails the batch as SQLAlchemy's ``DataError``, which
    the worker isolates (``worker.batch``), and the next batch is stored."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any length")
    with pytest.raises(sa.exc.DataError):
        store.change(op("plan", SET, "pro"), op("x" * 300, SET, 1))
    store.change(op("plan", SET, "pro"))
    assert store.attributes() == {"plan": ("string", "pro")}
