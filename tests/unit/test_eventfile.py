"""``gbq publish FILE``'s reading: any bytes are refused part by part, never raised."""

from __future__ import annotations

import codecs
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.events import MAX_EVENT_BYTES
from worker.ops.eventfile import Refusal, records

GOOD = json.dumps({"kind": "cashback", "transaction_id": "T", "customer_id": "c", "amount": "1"})


@pytest.mark.parametrize(
    ("data", "where", "why"),
    [
        # (the file, where the refusal is, what it says)
        (b"", "", "is empty"),
        (b"  \n\n\t", "", "is empty"),
        (codecs.BOM_UTF16_LE + GOOD.encode("utf-16-le"), "", "UTF-16"),
        (codecs.BOM_UTF16_BE + GOOD.encode("utf-16-be"), "", "UTF-16"),
        (GOOD.encode("utf-16-le"), "line 1", "NUL bytes"),  # UTF-16 without its BOM
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "line 1", "NUL bytes"),
        (b'{"customer_id": "Andr\xe9"}', "line 1", "not UTF-8"),  # Latin-1
        (b"[" * 100_000 + b"]" * 100_000, "line 1", "nested"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "line 1", "nested"),
        (b"x" * (MAX_EVENT_BYTES + 2000), "line 1", "more than an event may be"),
        (b"{oops", "line 1", "not JSON"),
        (b'{"amount": NaN}', "line 1", "NaN is not a JSON number"),
        (b"1" * 5000, "line 1", "not readable JSON"),  # past Python's int digits limit
    ],
)
def test_hostile_bytes_are_refused_with_where_and_why(data: bytes, where: str, why: str) -> None:
    found = records(data)
    assert len(found) == 1
    refusal = found[0]
    assert isinstance(refusal, Refusal)
    assert refusal.where == where
    assert why in refusal.why


def test_the_good_lines_of_a_mixed_file_are_still_read() -> None:
    """A Latin-1 line and a binary line among JSON lines: only those two are refused."""
    data = b"\n".join([GOOD.encode(), b'{"x": "\xe9"}', b"\x00\x01", GOOD.encode(), b""])
    found = records(data)
    assert [type(item).__name__ for item in found] == ["tuple", "Refusal", "Refusal", "tuple"]
    assert [item.where if isinstance(item, Refusal) else item[0] for item in found] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]


def test_a_utf8_bom_is_not_an_error() -> None:
    assert records(codecs.BOM_UTF8 + GOOD.encode()) == [("the document", json.loads(GOOD))]


def test_an_array_is_read_item_by_item() -> None:
    found = records(f"[{GOOD}, 3]".encode())
    assert found == [("item 1", json.loads(GOOD)), ("item 2", 3)]


@given(st.binary(max_size=2000))
def test_any_bytes_are_read_or_refused_never_raised(data: bytes) -> None:
    for item in records(data):
        assert isinstance(item, Refusal | tuple)
