"""Cookieless visitor ids: pure, keyed, and unrelated once any input changes."""

from __future__ import annotations

import uuid

from sightline.cookieless import SALT_BYTES, cookieless_visitor_id, derived_uuid

SALT, OTHER_SALT = b"\x01" * SALT_BYTES, b"\x02" * SALT_BYTES
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"


def test_the_same_inputs_give_the_same_id() -> None:
    first = cookieless_visitor_id(SALT, "prd_1", "203.0.113.9", AGENT)
    assert first == cookieless_visitor_id(SALT, "prd_1", "203.0.113.9", AGENT)
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)


def test_any_other_input_gives_another_id() -> None:
    base = cookieless_visitor_id(SALT, "prd_1", "203.0.113.9", AGENT)
    others = {
        cookieless_visitor_id(OTHER_SALT, "prd_1", "203.0.113.9", AGENT),  # the next day
        cookieless_visitor_id(SALT, "prd_2", "203.0.113.9", AGENT),
        cookieless_visitor_id(SALT, "prd_1", "203.0.113.10", AGENT),
        cookieless_visitor_id(SALT, "prd_1", "203.0.113.9", AGENT + " "),
        cookieless_visitor_id(SALT, "prd_1", None, AGENT),
    }
    assert base not in others and len(others) == 5


def test_parts_are_not_run_together() -> None:
    assert derived_uuid(SALT, "ab", "c") != derived_uuid(SALT, "a", "bc")
