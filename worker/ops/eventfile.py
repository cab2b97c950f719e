"""Events from a file for ``gbq publish`` and ``gbq dlq retry --replace``: one JSON object,
an array, or JSON lines; ``gbq dlq export`` lines (``{"event_id": …, "event": {…}}``) are
read as the events they carry, so an export can be corrected and published back.

The file is anyone's bytes: every part that cannot be an event is refused with where it
is and why (not UTF-8, UTF-16, binary, nested too deeply, a line past the event size
limit, not JSON, an invalid field), the rest is read, and nothing raises.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Final

from producers.events import MAX_EVENT_BYTES
from producers.untrusted import UnreadableError, load_json

MAX_FILE_BYTES: Final = 256 * 1024 * 1024  # far past any batch a person corrects by hand
MAX_DOCUMENT_DEPTH: Final = 34  # an array of exports of events: 2 levels above an event's
_UTF16_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE)


@dataclass(frozen=True)
class Refusal:
    """A part of the file that is no event: where (``line 3``) and why."""

    where: str
    why: str


def unwrapped(record: Any) -> Any:
    """An export line stands for its event."""
    if isinstance(record, dict) and "event_id" in record and isinstance(record.get("event"), dict):
        return record["event"]
    return record


def records(data: bytes) -> list[tuple[str, Any] | Refusal]:
    """(where, parsed JSON) or a :class:`Refusal`, for a JSON object, a JSON array or JSON
    lines; a file that is none of these as a whole is read line by line."""
    if data.startswith(_UTF16_BOMS):
        return [Refusal("", "is UTF-16 or UTF-32, not UTF-8: convert it (iconv -t UTF-8)")]
    data = data.removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        return [Refusal("", "is empty: nothing to publish")]
    whole = _document(data)
    if isinstance(whole, dict):
        if len(data) > MAX_EVENT_BYTES + 1024:
            return [Refusal("", f"{len(data)} bytes, more than an event may be")]
        return [("the document", whole)]
    if isinstance(whole, list):
        return [(f"item {n}", item) for n, item in enumerate(whole, 1)]
    return [_line(number, line) for number, line in enumerate(data.splitlines(), 1) if line.strip()]


def _document(data: bytes) -> Any:
    """The file as one JSON document, or None (then it is read as JSON lines)."""
    stripped = data.strip()
    if not stripped.startswith((b"{", b"[")):
        return None
    try:
        return load_json(stripped, max_depth=MAX_DOCUMENT_DEPTH)
    except UnreadableError:
        return None


def _line(number: int, line: bytes) -> tuple[str, Any] | Refusal:
    where = f"line {number}"
    if b"\x00" in line:
        return Refusal(where, "binary data (NUL bytes), not JSON")
    if len(line) > MAX_EVENT_BYTES + 1024:
        return Refusal(where, f"{len(line)} bytes, more than an event may be ({MAX_EVENT_BYTES})")
    try:
        return where, load_json(line)
    except UnreadableError as error:
        return Refusal(where, str(error))
