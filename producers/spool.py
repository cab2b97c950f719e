"""The local spool: where ``publish()`` puts events while Redis cannot be reached.

A SQLite file (WAL, ``synchronous=FULL``: an accepted event survives a power cut), safe to
share between the processes of one host. The scheduler (or ``Publisher.relay_spool``)
moves its rows to Redis once Redis answers again, then deletes them; a crash in between
sends an event twice, which the ledger and Gameball's id check make harmless.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from producers.transport import InboxEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    published_at REAL NOT NULL
)
"""


class Spool:
    """A durable FIFO of inbox entries in a SQLite file."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            if not self._ready:
                connection.execute(_SCHEMA)
                self._ready = True
            yield connection
        finally:
            connection.close()

    def add(self, entries: Sequence[InboxEntry]) -> None:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO spool (event_id, event_json, published_at) VALUES (?, ?, ?)",
                [(e.event_id, e.event_json, e.published_at) for e in entries],
            )
            connection.execute("COMMIT")

    def peek(self, limit: int) -> list[tuple[int, InboxEntry]]:
        """The oldest ``limit`` entries with their sequence numbers (for ``remove``)."""
        if not self.path.exists():
            return []
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT seq, event_id, event_json, published_at FROM spool ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            (seq, InboxEntry(event_id, event_json, at)) for seq, event_id, event_json, at in rows
        ]

    def remove(self, seqs: Iterable[int]) -> None:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("DELETE FROM spool WHERE seq = ?", [(seq,) for seq in seqs])
            connection.execute("COMMIT")

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect() as connection:
            (count,) = connection.execute("SELECT COUNT(*) FROM spool").fetchone()
        return int(count)
