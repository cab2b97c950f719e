"""When a kept inbox entry may be forgotten (worker.rules.kept_inbox), and the settings
that turn keeping on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from producers.settings import multi_host_as_query
from worker.rules.kept_inbox import Sample, StandbyPositions, forget_before, lsn, still_needed
from worker.settings import Settings

SAMPLES = [Sample(10.0, 100), Sample(11.0, 200), Sample(12.0, 300)]


def test_entries_marked_before_the_newest_sample_the_standby_has_may_go() -> None:
    standbys = StandbyPositions(current=300, flushed=(250,))
    assert forget_before(SAMPLES, standbys, required=1) == 11.0


def test_nothing_goes_while_the_standby_is_behind_every_sample_or_absent() -> None:
    assert forget_before(SAMPLES, StandbyPositions(300, (50,)), required=1) is None
    assert forget_before(SAMPLES, StandbyPositions(300, ()), required=1) is None  # cut off
    assert forget_before(SAMPLES, StandbyPositions(300, (None,)), required=1) is None  # unseen


def test_with_two_required_the_second_furthest_standby_decides() -> None:
    standbys = StandbyPositions(current=300, flushed=(300, 150, None))
    assert forget_before(SAMPLES, standbys, required=2) == 10.0
    assert forget_before(SAMPLES, standbys, required=3) is None


def test_without_standbys_required_everything_may_go() -> None:
    assert forget_before([], StandbyPositions(0, ()), required=0) == float("inf")


def test_only_the_newest_safe_sample_and_newer_ones_are_kept() -> None:
    assert still_needed(SAMPLES, 11.0) == SAMPLES[1:]
    assert still_needed(SAMPLES, None) == SAMPLES


@pytest.mark.parametrize(
    ("text", "value"), [("0/0", 0), ("16/B374D848", (0x16 << 32) + 0xB374D848)]
)
def test_a_pg_lsn_reads_as_a_number(text: str, value: int) -> None:
    assert lsn(text) == value


def test_standbys_need_a_postgresql_ledger() -> None:
    with pytest.raises(ValidationError, match="GBQ_LEDGER_STANDBYS=1 needs a PostgreSQL ledger"):
        Settings(ledger_standbys=1)
    settings = Settings(ledger_standbys=1, database_url="postgresql://gbq@db1,db2/gbq")  # type: ignore[arg-type]
    assert settings.database_url is not None
    assert "host=db1&host=db2" in settings.database_url.get_secret_value()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://u:p%40w@db1:5432,db2:5433/gbq",
            (
                "postgresql+psycopg://u:p%40w@/gbq?host=db1:5432&host=db2:5433"
                "&target_session_attrs=read-write"
            ),
        ),
        (
            "postgresql+psycopg://u@db1,db2/gbq?target_session_attrs=primary&sslmode=require",
            (
                "postgresql+psycopg://u@/gbq?host=db1&host=db2&target_session_attrs=primary"
                "&sslmode=require"
            ),
        ),
        ("postgresql+psycopg://u@db1/gbq", "postgresql+psycopg://u@db1/gbq"),
        ("sqlite:////tmp/a,b.db", "sqlite:////tmp/a,b.db"),
    ],
)
def test_libpqs_multi_host_form_is_read_as_sqlalchemy_reads_it(url: str, expected: str) -> None:
    assert multi_host_as_query(url) == expected
