"""Reading bytes nobody vouches for: bounded JSON, and a safe way to show raw bytes.

Anything read back from Redis, the spool or the outbox may have been written by someone
other than this code (a bug in another producer, a half-written entry after a crash, a
person with broker access). Python's ``json`` accepts ``NaN``, raises RecursionError on
deep nesting and ValueError on huge integers; here every such case is one error type,
and what is returned is at most ``max_depth`` containers deep, so that re-serialising or
validating it can never recurse out of the stack.

    UnreadableError(ValueError)   the bytes are not a bounded, plain JSON document
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Final

MAX_DEPTH: Final = 32


class UnreadableError(ValueError):
    """Input that cannot be read safely; the message says why."""


def _refuse_constant(name: str) -> Any:
    raise UnreadableError(f"{name} is not a JSON number")


def load_json(data: object, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """Parse strict UTF-8 JSON (no NaN/Infinity) at most ``max_depth`` containers deep."""
    if not isinstance(data, bytes | str):
        raise UnreadableError(f"a {type(data).__name__}, not text")
    if max_bytes is not None and len(data) > max_bytes:
        raise UnreadableError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise UnreadableError(f"not UTF-8 ({error.reason} at byte {error.start})") from None
    except RecursionError:
        raise UnreadableError("nested too deeply to read") from None
    except json.JSONDecodeError as error:
        raise UnreadableError(f"not JSON ({error.msg} at char {error.pos})") from None
    except ValueError as error:  # e.g. an integer longer than Python will convert
        raise UnreadableError(f"not readable JSON ({str(error)[:120]})") from None
    if _deeper_than(value, max_depth):
        raise UnreadableError(f"nested more than {max_depth} levels deep")
    return value


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests more than ``max_depth`` lists/objects (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def printable(raw: bytes | str, limit: int = 4096) -> str:
    """``raw`` as one line of text that is safe on any terminal and in any JSON: bytes that
    are not UTF-8, control and format characters, surrogates and line breaks are shown as
    ``\\xNN`` / ``\\uNNNN`` escapes; cut at ``limit`` characters with a marker."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    cut = len(text) > limit
    out = []
    for char in text[:limit]:
        category = unicodedata.category(char)
        if category in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out) + (f"… ({len(text) - limit} more characters)" if cut else "")
