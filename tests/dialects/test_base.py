"""``new_event``: the one constructor of canonical events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from sightline.dialects.base import new_event
from sightline.envelope import Envelope
from sightline.ids import derived_id
from sightline.model import EventType

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def envelope(**fields: object) -> Envelope:
    base: dict[str, object] = {
        "id": "env-1",
        "dialect": "gameball",
        "kind": "event",
        "product_id": "p1",
        "received_at": RECEIVED,
        "ip": "203.0.113.9",
        "user_agent": "UA",
    }
    return Envelope(**(base | fields))  # type: ignore[arg-type]


def test_what_only_the_envelope_knows_is_filled_in() -> None:
    event = new_event(envelope(), name="buy", type=EventType.TRACK, index=2)
    assert event.message_id == derived_id("env-1", "2")
    assert (event.product_id, event.dialect) == ("p1", "gameball")
    assert event.timestamp == event.received_at == RECEIVED
    assert event.original_timestamp is None and event.sent_at is None
    assert event.context == {"ip": "203.0.113.9", "userAgent": "UA"}
    # UUIDv7 of the receive time: its first 48 bits are the receive time in ms
    assert int(event.id.replace("-", "")[:12], 16) == int(RECEIVED.timestamp() * 1000)


def test_the_clients_own_values_win() -> None:
    happened, sent = RECEIVED - timedelta(minutes=5), RECEIVED - timedelta(seconds=1)
    event = new_event(
        envelope(sent_at=RECEIVED),
        name="buy",
        type=EventType.TRACK,
        message_id="m-1",
        timestamp=happened,
        sent_at=sent,
        context={"ip": None},
    )
    assert (event.message_id, event.timestamp, event.original_timestamp) == (
        "m-1",
        happened,
        happened,
    )
    assert event.sent_at == sent
    assert event.context == {"ip": None}
    assert new_event(envelope(sent_at=RECEIVED), name="x", type=EventType.TRACK).sent_at == RECEIVED


def test_the_same_envelope_gives_the_same_message_ids() -> None:
    first = [new_event(envelope(), name="x", type=EventType.TRACK, index=i) for i in range(3)]
    again = [new_event(envelope(), name="x", type=EventType.TRACK, index=i) for i in range(3)]
    assert [e.message_id for e in first] == [e.message_id for e in again]
    assert len({e.message_id for e in first}) == 3


def test_events_are_immutable() -> None:
    event = new_event(envelope(), name="x", type=EventType.TRACK)
    with pytest.raises(AttributeError):
        event.name = "y"  # type: ignore[misc]
    assert msgspec.structs.replace(event, name="y").name == "y"


def test_lead_contact_and_recording_properties_set_the_entity() -> None:
    """Any dialect's ``lead_id`` / ``contact_id`` / ``recording_id`` properties (DAS search)."""

    def about(properties: dict[str, object], **fields: object) -> tuple[object, ...]:
        event = new_event(
            envelope(), name="e", type=EventType.TRACK, properties=properties, **fields
        )
        return event.entity_type, event.entity_id, event.recording_id

    assert about({"lead_id": "L1", "recording_id": "R1"}) == ("lead", "L1", "R1")
    assert about({"contact_id": 42}) == ("contact", "42", None)
    assert about({"lead_id": "L1", "contact_id": "C1"}) == ("lead", "L1", None)
    # not ids: objects, booleans, empty or too long text stay properties only
    assert about({"lead_id": {"x": 1}, "contact_id": True}) == (None, None, None)
    assert about({"lead_id": "", "recording_id": "r" * 256}) == (None, None, None)
    # what the dialect set itself wins
    own = about({"lead_id": "L1", "recording_id": "R1"}, entity_type="contact", entity_id="C9")
    assert own == ("contact", "C9", "R1")
