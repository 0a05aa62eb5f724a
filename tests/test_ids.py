from __future__ import annotations

import random
import time
import uuid

from sightline.ids import derived_id, new_key, uuid7


def test_uuid7_is_a_valid_version_7_uuid_ordered_by_time() -> None:
    ids = [uuid7(unix_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    assert ids == sorted(ids)
    assert int(ids[0].replace("-", "")[:12], 16) == 1_700_000_000_000


def test_uuid7_carries_its_millisecond_whichever_came_before() -> None:
    """Each millisecond's text is made once (``sightline.ids``): it follows the clock."""
    for ms in (1, 1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 1, 2**48 - 1):
        parsed = uuid.UUID(uuid7(unix_ms=ms))
        assert parsed.int >> 80 == ms
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert uuid.UUID(uuid7()).int >> 80 <= time.time_ns() // 1_000_000


def test_uuid7_does_not_repeat() -> None:
    assert len({uuid7(unix_ms=1) for _ in range(10_000)}) == 10_000


def test_derived_ids_are_stable_and_keys_random() -> None:
    assert derived_id("env", "0") == derived_id("env", "0") != derived_id("env", "1")
    assert new_key("wk") != new_key("wk")
    assert new_key("wk").startswith("wk_")


def test_derived_ids_are_the_uuid5_they_always_were() -> None:
    """Stored events carry these ids: a replay matches them only if they never change."""
    assert derived_id("env", "0") == "b3a2315d-85fb-51da-9e13-ef1c947dbd6d"
    rng = random.Random(7)
    alphabet = "ab\x1f\x00é☃𝄞-0"
    for n in range(5_000):
        parts = ["".join(rng.choices(alphabet, k=rng.randrange(40))) for _ in range(n % 4)]
        expected = uuid.uuid5(uuid.NAMESPACE_URL, "sightline:" + "\x1f".join(parts))
        assert derived_id(*parts) == str(expected)
