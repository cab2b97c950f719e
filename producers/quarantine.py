"""The quarantine: poison found where there is no ledger to bury it in.

A worker's consumer (in Celery's main process) and a publisher relaying its spool have
Redis but no ledger. What they cannot read — a queue message that is not a ``gbq.deliver``
request, a spool row that is not an event — is pushed, as a :class:`Poison` record, onto
the Redis list ``gbq:quarantine`` (in the same transaction that removes it from where it
sat, where there is one). The scheduler's quarantine sweep turns each record into a dead
letter ``malformed`` that keeps the raw bytes (the first :data:`KEEP_BYTES`), their full
length and their SHA-256. Records are written at the left and taken from the right.

The list itself is read as hostile too: a record that is not one of ours becomes a dead
letter of its own, with the record as its raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from producers.keys import QUARANTINE_KEY
from producers.untrusted import UnreadableError, load_json

KEEP_BYTES: Final = 64 * 1024
_MAX_RECORD_BYTES: Final = 2 * KEEP_BYTES  # base64 of KEEP_BYTES plus the fields
_FIELDS: Final = {"source", "problem", "raw", "length", "sha256"}


@dataclass(frozen=True)
class Poison:
    """Unreadable input: where it was, why it was refused, and its bytes."""

    source: str  # e.g. "queue gbq", "unacked", "inbox", "spool", "outbox"
    problem: str
    raw: bytes  # at most KEEP_BYTES
    length: int  # of the whole input
    sha256: str  # of the whole input

    @classmethod
    def of(cls, source: str, problem: str, raw: bytes | str) -> Poison:
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        return cls(
            source=source[:100],
            problem=problem[:2000],
            raw=data[:KEEP_BYTES],
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    @property
    def dead_letter_id(self) -> str:
        """The same bytes give the same dead letter, wherever they were found."""
        return "malformed:" + self.sha256[:32]

    def record(self) -> bytes:
        return json.dumps(
            {
                "source": self.source,
                "problem": self.problem,
                "raw": base64.b64encode(self.raw).decode(),
                "length": self.length,
                "sha256": self.sha256,
            }
        ).encode()

    @classmethod
    def from_record(cls, record: bytes) -> Poison:
        """Read a quarantine record; anything else is poison found in the quarantine."""
        try:
            return cls._read(record)
        except (UnreadableError, binascii.Error):
            return cls.of("quarantine", "not a quarantine record", record)

    @classmethod
    def _read(cls, record: bytes) -> Poison:
        data: Any = load_json(record, max_depth=1, max_bytes=_MAX_RECORD_BYTES)
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise UnreadableError("not a record")
        source, problem, raw = data["source"], data["problem"], data["raw"]
        length, sha = data["length"], data["sha256"]
        if not (
            isinstance(source, str)
            and isinstance(problem, str)
            and isinstance(raw, str)
            and isinstance(length, int)
            and not isinstance(length, bool)
            and isinstance(sha, str)
            and len(sha) == 64
            and all(c in "0123456789abcdef" for c in sha)
        ):
            raise UnreadableError("not a record")
        kept = base64.b64decode(raw, validate=True)
        if len(kept) > KEEP_BYTES or length < len(kept):
            raise UnreadableError("not a record")
        return cls(source[:100], problem[:2000], kept, length, sha)


def quarantine(pipe: Any, poisons: Iterable[Poison]) -> None:
    """Queue ``LPUSH`` commands for ``poisons`` on a Redis client or pipeline."""
    records = [poison.record() for poison in poisons]
    if records:
        pipe.lpush(QUARANTINE_KEY, *records)


def oldest_quarantined(client: Any, limit: int) -> list[Poison]:
    """Up to ``limit`` records, oldest first (they stay until :func:`forget_oldest`)."""
    return [Poison.from_record(record) for record in oldest(client, QUARANTINE_KEY, limit)]


def forget_oldest(client: Any, count: int, key: str = QUARANTINE_KEY) -> None:
    """Drop the ``count`` oldest items of a list that is only ever added to at the left."""
    if count > 0:
        client.ltrim(key, 0, -count - 1)


def oldest(client: Any, key: str, limit: int) -> list[bytes]:
    """Up to ``limit`` items of a list added to at the left, oldest first (left in place)."""
    return list(reversed(client.lrange(key, -limit, -1)))
