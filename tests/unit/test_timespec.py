"""Durations and ISO times on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.rules.timespec import TimeSpecError, parse_duration, parse_moment

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        (" 1.5h ", NOW - timedelta(minutes=90)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(days=7)),
        ("2026-11-20T08:00:00Z", datetime(2026, 11, 20, 8, tzinfo=UTC)),
        (
            "2026-11-20T10:00:00+02:00",
            datetime(2026, 11, 20, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_moments(text: str, moment: datetime) -> None:
    """Durations count back from now; ISO times are taken as written."""
    assert parse_moment(text, NOW) == moment


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-2h", "yesterday", "2026-13-01"])
def test_bad_times_say_what_is_accepted(text: str) -> None:
    """Anything else is refused with the forms that work."""
    with pytest.raises(TimeSpecError, match="2h"):
        parse_moment(text, NOW)


def test_durations() -> None:
    """--older-than takes durations only."""
    assert parse_duration("7d") == timedelta(days=7)
    with pytest.raises(TimeSpecError):
        parse_duration("2026-11-20")
