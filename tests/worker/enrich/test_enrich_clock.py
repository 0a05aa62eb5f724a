from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.enrich import correct_timestamp

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CLIENT_BEHIND = timedelta(hours=2)  # the device's clock runs two hours slow


@pytest.mark.parametrize(
    ("sent_at", "timestamp", "expected", "is_clamped"),
    [
        pytest.param(
            RECEIVED - CLIENT_BEHIND + timedelta(seconds=1),
            RECEIVED - CLIENT_BEHIND - timedelta(seconds=9),
            RECEIVED - timedelta(seconds=10),
            False,
            id="skewed-clock-corrected",
        ),
        pytest.param(
            RECEIVED + timedelta(days=3, seconds=5),
            RECEIVED + timedelta(days=3),
            RECEIVED - timedelta(seconds=5),
            False,
            id="clock-days-ahead-corrected",
        ),
        pytest.param(None, None, RECEIVED, False, id="no-timestamp-uses-received"),
        pytest.param(RECEIVED, None, RECEIVED, False, id="only-sent-at-uses-received"),
        pytest.param(
            None,
            RECEIVED - timedelta(hours=5),
            RECEIVED - timedelta(hours=5),
            False,
            id="no-sent-at-keeps-timestamp",
        ),
        pytest.param(
            None,
            RECEIVED + timedelta(hours=23),
            RECEIVED + timedelta(hours=23),
            False,
            id="future-within-limit-kept",
        ),
        pytest.param(
            None, RECEIVED + timedelta(days=1), RECEIVED + timedelta(days=1), False, id="limit-kept"
        ),
        pytest.param(
            None,
            RECEIVED + timedelta(days=1, seconds=1),
            RECEIVED,
            True,
            id="future-beyond-limit-clamped",
        ),
        pytest.param(
            RECEIVED,
            RECEIVED + timedelta(days=2),
            RECEIVED,
            True,
            id="timestamp-after-sent-at-clamped",
        ),
        pytest.param(
            datetime(9999, 12, 31, tzinfo=UTC),
            datetime(1, 1, 2, tzinfo=UTC),
            RECEIVED,
            True,
            id="out-of-range-gap-clamped",
        ),
    ],
)
def test_correct_timestamp(
    sent_at: datetime | None, timestamp: datetime | None, expected: datetime, is_clamped: bool
) -> None:
    assert correct_timestamp(RECEIVED, sent_at, timestamp) == (expected, is_clamped)


def test_custom_future_limit() -> None:
    ahead = RECEIVED + timedelta(minutes=10)

    assert correct_timestamp(RECEIVED, None, ahead, max_future=timedelta(minutes=5)) == (
        RECEIVED,
        True,
    )
    assert correct_timestamp(RECEIVED, None, ahead, max_future=timedelta(minutes=15)) == (
        ahead,
        False,
    )


def test_results_are_utc() -> None:
    paris = timezone(timedelta(hours=2))
    received = datetime(2024, 5, 1, 14, 0, 0, tzinfo=paris)
    timestamp = datetime(2024, 5, 1, 13, 0, 0, tzinfo=paris)

    corrected, is_clamped = correct_timestamp(received, None, timestamp)
    fallback, _ = correct_timestamp(received, None, None)

    assert corrected == datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)
    assert corrected.utcoffset() == timedelta(0)
    assert fallback.utcoffset() == timedelta(0)
    assert not is_clamped


def test_naive_client_times_are_read_as_utc() -> None:
    corrected, _ = correct_timestamp(
        RECEIVED, datetime(2024, 5, 1, 9, 0, 10), datetime(2024, 5, 1, 9, 0, 0)
    )

    assert corrected == RECEIVED - timedelta(seconds=10)
    assert corrected.tzinfo is not None
