"""When the inbox may forget an entry the ledger has: once the ledger's standbys have it.

With ``GBQ_LEDGER_STANDBYS`` set, a worker keeps the inbox entries of the events it
ingested (``gbq:inbox:kept``, marked with Redis's time), and the scheduler forgets them
once that many standbys have flushed the ledger's WAL past what was committed before the
mark. Each tick it samples (Redis's time, then the primary's WAL position): a mark made
before a sample's time was made after its commit, so the commit lies before the sample's
position. An entry marked before the newest sample whose position the standbys have is
safe to forget; until then a failover could lose its event from the ledger, and the kept
entry brings it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StandbyPositions:
    """The primary's WAL position and how far each streaming standby has flushed it
    (None where the database user may not see it: ``pg_monitor`` shows it)."""

    current: int
    flushed: tuple[int | None, ...]


@dataclass(frozen=True)
class Sample:
    at: float  # Redis's time, read before the position
    position: int


def forget_before(
    samples: Sequence[Sample], standbys: StandbyPositions, required: int
) -> float | None:
    """The Redis time before which kept entries may be forgotten (None: none yet): the
    newest sample that ``required`` standbys have flushed past."""
    if required <= 0:
        return float("inf")
    seen = sorted((p for p in standbys.flushed if p is not None), reverse=True)
    if len(seen) < required:
        return None
    reached = seen[required - 1]  # the least position of the ``required`` furthest
    safe = [sample.at for sample in samples if sample.position <= reached]
    return max(safe) if safe else None


def still_needed(samples: Sequence[Sample], before: float | None) -> list[Sample]:
    """The samples worth keeping: the newest that is safe, and any newer."""
    if before is None:
        return list(samples)
    return [sample for sample in samples if sample.at >= before]


def lsn(text: str) -> int:
    """PostgreSQL's ``pg_lsn`` text (``16/B374D848``) as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)
