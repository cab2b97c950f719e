"""Reading hostile bytes: bounded JSON, printable renderings, quarantine records."""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.quarantine import KEEP_BYTES, Poison
from producers.untrusted import UnreadableError, load_json, printable
from tests.poison import deeply_nested


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff{}", "not UTF-8"),  # a BOM-less UTF-16 guess is never made
        ("{", "not JSON"),
        ("NaN", "not a JSON number"),
        ('{"a": Infinity}', "not a JSON number"),
        ("9" * 5000, "not readable JSON"),  # past Python's int conversion limit
        (deeply_nested(), "nested too deeply"),  # past the interpreter's stack
        (deeply_nested(33), "nested more than 32"),  # past our own limit
        (None, "a NoneType, not text"),
        (12, "a int, not text"),
    ],
)
def test_unreadable_json_is_one_error_type(data: Any, problem: str) -> None:
    with pytest.raises(UnreadableError, match=problem):
        load_json(data)


def test_json_within_the_limits_is_read() -> None:
    assert load_json(deeply_nested(32)) == json.loads(deeply_nested(32))
    assert load_json(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    with pytest.raises(UnreadableError, match="more than the 3 allowed"):
        load_json("[1,2]", max_bytes=3)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"plain text", "plain text"),
        (b"nul\x00esc\x1b[31mred", "nul\\x00esc\\x1b[31mred"),  # no terminal escapes
        (b"bad utf-8 \xff\xfe", "bad utf-8 \\xff\\xfe"),
        ("line\u2028break\nand\rmore", "line\\u2028break\\x0aand\\x0dmore"),
        ("rtl \u202e override", "rtl \\u202e override"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("arabic نص and emoji 🎉", "arabic نص and emoji 🎉"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(raw: bytes | str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_cuts_long_input_and_says_so() -> None:
    assert printable("x" * 10, 4) == "xxxx… (6 more characters)"


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_printable_is_always_one_safe_line(raw: bytes | str) -> None:
    shown = printable(raw)
    unsafe = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, invisibles, line breaks
    assert not [char for char in shown if unicodedata.category(char) in unsafe]
    shown.encode("utf-8")  # no lone surrogate left: any output stream can take it


def test_a_poison_keeps_the_first_bytes_the_length_and_the_hash() -> None:
    raw = b"\x00" * (KEEP_BYTES + 5)
    poison = Poison.of("queue gbq", "not JSON", raw)
    assert (poison.raw, poison.length) == (raw[:KEEP_BYTES], len(raw))
    assert poison.sha256 == hashlib.sha256(raw).hexdigest()
    assert poison.dead_letter_id == "malformed:" + poison.sha256[:32]
    assert Poison.from_record(poison.record()) == poison


@pytest.mark.parametrize(
    "record",
    [
        b"\x00 garbage",
        b"[]",
        json.dumps({"source": "s", "problem": "p", "raw": "!!", "length": 1, "sha256": "0" * 64}),
        json.dumps({"source": "s", "problem": "p", "raw": "", "length": 1, "sha256": "nothex"}),
        json.dumps({"source": 1, "problem": "p", "raw": "", "length": 0, "sha256": "0" * 64}),
        json.dumps(
            {
                "source": "s",
                "problem": "p",
                "raw": base64.b64encode(b"x" * (KEEP_BYTES + 1)).decode(),
                "length": KEEP_BYTES + 1,
                "sha256": "0" * 64,
            }
        ),
        deeply_nested(),
    ],
)
def test_a_record_that_is_not_ours_is_poison_of_the_quarantine(record: bytes | str) -> None:
    """Anything in the quarantine list that is not a record becomes a dead letter itself."""
    raw = record.encode() if isinstance(record, str) else record
    poison = Poison.from_record(raw)
    assert (poison.source, poison.problem) == ("quarantine", "not a quarantine record")
    assert poison.sha256 == hashlib.sha256(raw).hexdigest()
