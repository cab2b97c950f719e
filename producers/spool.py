"""The local spool: where ``publish()`` puts events while Redis cannot be reached.

A SQLite file (WAL, ``synchronous=FULL``: an accepted event survives a power cut), safe to
share between the processes of one host. The publisher that spooled relays it in the
background once Redis answers again (``producers.relay``), and so does a scheduler that
shares the path: rows go to Redis, then are deleted; a crash in between
sends an event twice, which the ledger and Gameball's id check make harmless. A row that
cannot be read (the file is shared, so anything may have written it) is quarantined on
the way, never left to block the rows behind it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from producers.events import MAX_EVENT_BYTES
from producers.quarantine import Poison
from producers.transport import NOT_REPLICATED, Replication, push_to_inbox
from producers.untrusted import UnreadableError, load_json, printable
from producers.wire import InboxEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    published_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class SpoolRow:
    """A spool row: an entry to relay, or poison to quarantine."""

    seq: int
    entry: InboxEntry | None
    poison: Poison | None = None


def _read_row(seq: int, event_id: object, event_json: object, published_at: object) -> SpoolRow:
    """Only ``Spool.add`` writes valid rows (of validated events); check all the same: the
    file is shared, and a bad row found here is the spool's, not the inbox's, to report."""
    try:
        event = load_json(event_json, max_bytes=MAX_EVENT_BYTES)
        entry = InboxEntry.of(event_id, event, published_at)
        entry.event()
    except UnreadableError as error:
        raw = (
            event_json
            if isinstance(event_json, bytes)
            else str(event_json).encode("utf-8", "surrogatepass")
        )
        problem = f"row {seq} ({printable(str(event_id), 120)}): {error}"
        return SpoolRow(seq, None, Poison.of("spool", problem, raw))
    return SpoolRow(seq, entry)


class Spool:
    """A durable FIFO of inbox entries in a SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = 5.0,
        replication: Replication = NOT_REPLICATED,
    ) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self.replication = replication  # what a relayed row must reach before it goes
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

    def peek(self, limit: int) -> list[SpoolRow]:
        """The oldest ``limit`` rows, each read as an entry or as poison (a row written by
        anything but :meth:`add`: wrong types, JSON that is not an object, …)."""
        if not self.path.exists():
            return []
        with self._connect() as connection:
            return self._oldest(connection, limit)

    def relay(self, client: redis.Redis, limit: int) -> int:
        """Move up to ``limit`` rows to Redis, oldest first, in one Redis transaction that
        also quarantines unreadable rows; then delete them. Returns how many rows moved.

        No lock of the spool is held while Redis is written to: a Redis that hangs (a
        failover, a replica slow to confirm) must never hold up ``add``, which checkout's
        ``publish()`` waits on. Two relayers of one spool (its publishers, a scheduler
        sharing the path) may push the same rows at once; a row pushed twice is harmless
        (the inbox keeps the first copy), and each is deleted once pushed. With
        ``replication``, rows go only once the replicas confirmed them
        (``NotReplicatedError`` otherwise, and they stay)."""
        rows = self.peek(limit)
        if not rows:
            return 0
        push_to_inbox(
            client,
            [row.entry for row in rows if row.entry is not None],
            [row.poison for row in rows if row.poison is not None],
            replication=self.replication,
        )
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("DELETE FROM spool WHERE seq = ?", [(row.seq,) for row in rows])
            connection.execute("COMMIT")
        return len(rows)

    @staticmethod
    def _oldest(connection: sqlite3.Connection, limit: int) -> list[SpoolRow]:
        rows = connection.execute(
            "SELECT seq, event_id, event_json, published_at FROM spool ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [_read_row(*row) for row in rows]

    def count(self) -> int:
        return self.backlog()[0]

    def backlog(self) -> tuple[int, float | None]:
        """How many rows wait, and the oldest one's publish time (epoch seconds)."""
        if not self.path.exists():
            return 0, None
        with self._connect() as connection:
            count, oldest = connection.execute(
                "SELECT COUNT(*), MIN(published_at) FROM spool"
            ).fetchone()
        return int(count), None if oldest is None else float(oldest)
