"""A ``GBQ_`` variable that is no setting is reported with the closest known name, never
silently ignored (``GBQ_RETRY_BASE_SECONDS`` for ``GBQ_RETRY_BASE_S``)."""

from __future__ import annotations

import pytest

from producers.settings import PublisherSettings, load_publisher_settings, unknown_variables
from worker.settings import Settings

RETRY_HINT = "(did you mean GBQ_RETRY_BASE_S?)"


@pytest.mark.parametrize(
    ("environ", "lines"),
    [
        # a misspelt duration suffix
        (
            {"GBQ_RETRY_BASE_SECONDS": "1"},
            [f"GBQ_RETRY_BASE_SECONDS is not a gbq setting {RETRY_HINT}: ignored"],
        ),
        # a one-letter slip, lower case (pydantic-settings reads names case-insensitively)
        (
            {"gbq_redis_uri": "x"},
            ["gbq_redis_uri is not a gbq setting (did you mean GBQ_REDIS_URL?): ignored"],
        ),
        # nothing close: reported without a guess
        ({"GBQ_ZZZ": "1"}, ["GBQ_ZZZ is not a gbq setting: ignored"]),
        # known settings, other prefixes and the test suite's own variables: nothing
        ({"GBQ_REDIS_URL": "x", "GBQ_LEASE_S": "1", "PATH": "/bin"}, []),
        ({"GBQ_TEST_DATABASE_URL": "x", "REDIS_URL": "x"}, []),
    ],
)  # fmt: skip
def test_unknown_variables_name_the_closest_setting(
    environ: dict[str, str], lines: list[str]
) -> None:
    assert unknown_variables(Settings, environ) == lines


def test_the_publisher_reports_only_its_own_near_misses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkout host often has the worker's variables set too: those are not typos."""
    monkeypatch.setenv("GBQ_SPOL_PATH", "spool.db")
    monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", "k")
    monkeypatch.setenv("GBQ_RETRY_CAP_S", "3")
    load_publisher_settings()
    assert [record.getMessage() for record in caplog.records] == [
        "GBQ_SPOL_PATH is not a gbq setting (did you mean GBQ_SPOOL_PATH?): ignored"
    ]
    assert "spool_path" in PublisherSettings.model_fields
