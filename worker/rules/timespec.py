"""Times on the command line: a duration ago (``90s``, ``15m``, ``2h``, ``3d``, ``1w``) or
an ISO-8601 moment (a missing zone means UTC). Pure; ``now`` is passed in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TimeSpecError(ValueError):
    """Not a duration nor an ISO time; the message gives the accepted forms."""


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise TimeSpecError(f"{text!r} is not a duration like 90s, 15m, 2h, 3d or 1w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_moment(text: str, now: datetime) -> datetime:
    """``2h`` means two hours before ``now``; otherwise an ISO-8601 time."""
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is neither a duration (2h, 3d) nor an ISO time (2026-11-22T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_s(moment: datetime | None, now: datetime) -> float:
    """Seconds since ``moment``, never negative (0 when there is none); a naive moment is
    UTC (SQLite hands them back so)."""
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())
