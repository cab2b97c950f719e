"""Every GBQ_ variable, given a value gbq cannot use, is refused in one line that names
it, shows the value (never a secret) and says what is expected."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml

from producers.settings import PublisherSettings, SettingsError, load_publisher_settings
from worker.sandbox.keys import COMPOSE_SANDBOX_API_KEY, COMPOSE_SANDBOX_SECRET_KEY
from worker.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]

SECRET = "s3cr3t-do-not-print"
# Values no type accepts, by annotation; then the fields whose rules refuse more.
BY_TYPE = {float: ["abc", "1e999x"], int: ["abc", "2.5"], bool: ["maybe"]}
BY_FIELD = {
    "redis_url": ["localhost:6379", f"http://user:{SECRET}@host/0"],
    "database_url": [f"mysql://user:{SECRET}@db/gbq", "gbq.db"],
    "outbox_database_url": [f"mongodb://user:{SECRET}@db/gbq"],
    "gameball_base_url": ["api.gameball.co", "ftp://api.gameball.co"],
    "gameball_api_key": ["   "],
    "gameball_secret_key": [""],
    "gameball_api_version": ["v5", "4.1"],
    "gameball_refund_time": ["now", "ORIGINAL"],
    "gameball_refund_at_paid": ["partial", ""],
    "log_format": ["xml"],
    "log_level": ["LOUD"],
    "web_password": ["   "],
}
# Any path or host name is one.
ACCEPTS_ANY_TEXT = {
    "home",
    "spool_path",
    "archive_dir",
    "metrics_host",
    "web_host",
    "web_allowed_hosts",
}
SECRET_FIELDS = {"gameball_api_key", "gameball_secret_key", "web_password"}


def bad_values(name: str) -> list[str]:
    if name in BY_FIELD:
        return BY_FIELD[name]
    annotation = Settings.model_fields[name].annotation
    return BY_TYPE[annotation]  # type: ignore[index]  # KeyError: a new type, add it above


def cases() -> list[tuple[str, str]]:
    return [
        (name, value)
        for name in Settings.model_fields
        if name not in ACCEPTS_ANY_TEXT
        for value in bad_values(name)
    ]


def test_every_setting_is_walked() -> None:
    """A new setting must come with bad values here (or be declared free text)."""
    walked = {name for name, _ in cases()} | ACCEPTS_ANY_TEXT
    assert walked == set(Settings.model_fields)


@pytest.mark.parametrize(("name", "value"), cases())
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    variable = f"GBQ_{name.upper()}"
    monkeypatch.setenv(variable, value)
    if name == "gameball_base_url":  # keep the sandbox-keys rule out of this case
        monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", "k")
        monkeypatch.setenv("GBQ_GAMEBALL_SECRET_KEY", "s")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    lines = refused.value.lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{variable}=")
    assert SECRET not in str(refused.value)
    if name in SECRET_FIELDS:
        assert lines[0].startswith(f"{variable}='***': ")
    elif SECRET not in value:
        assert repr(value) in lines[0]
    assert len(lines[0].split(": ", 1)[1]) > 5  # says what is expected


def test_several_bad_values_are_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBQ_RETRY_BASE_S", "abc")
    monkeypatch.setenv("GBQ_LEASE_S", "-1")
    monkeypatch.setenv("GBQ_GAMEBALL_API_VERSION", "v5")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert sorted(line.split("=")[0] for line in refused.value.lines) == [
        "GBQ_GAMEBALL_API_VERSION",
        "GBQ_LEASE_S",
        "GBQ_RETRY_BASE_S",
    ]


def test_the_publisher_reads_only_what_it_needs_and_says_it_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publisher.from_env() reads PublisherSettings: a worker-only variable does not stop
    checkout, a bad Redis URL does, in the same words as gbq."""
    monkeypatch.setenv("GBQ_RETRY_BASE_S", "abc")
    assert isinstance(load_publisher_settings(), PublisherSettings)
    monkeypatch.setenv("GBQ_REDIS_URL", "localhost:6379")
    with pytest.raises(SettingsError) as refused:
        load_publisher_settings()
    expected = (
        "GBQ_REDIS_URL='localhost:6379': must be a URL such as redis://host:6379/0, "
        "rediss://host:6380/0, unix:///path/redis.sock or (Redis Sentinel) "
        "redis+sentinel://host1:26379,host2:26379/mymaster/0"
    )
    assert refused.value.lines == (expected,)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    "url", ["https://api.gameball.co", "http://10.0.0.5:8099", "http://sandbox:8099"]
)
def test_the_sandbox_keys_never_leave_this_machine(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Keys unset (the sandbox's public ones) with a base URL beyond loopback: refused,
    naming what to set; with the account's keys, accepted."""
    monkeypatch.setenv("GBQ_GAMEBALL_BASE_URL", url)
    with pytest.raises(SettingsError, match="GBQ_GAMEBALL_API_KEY or GBQ_GAMEBALL_SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", "live-key")
    with pytest.raises(SettingsError):  # the secret key is still the public one
        load_settings()
    monkeypatch.setenv("GBQ_GAMEBALL_SECRET_KEY", SECRET)
    settings = load_settings()
    assert SECRET not in settings.endpoint()
    assert "live-key" not in settings.endpoint()
    assert settings.endpoint().endswith("key sha256:" + settings.endpoint()[-8:])


@pytest.mark.parametrize("url", ["http://127.0.0.1:8099", "http://localhost:1", "http://[::1]:2"])
def test_the_sandbox_keys_work_on_loopback(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("GBQ_GAMEBALL_BASE_URL", url)
    assert load_settings().gameball_base_url == url


def test_home_is_the_projects_from_any_of_its_folders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Unset, GBQ_HOME is .gbq at the project's root (pyproject.toml or .git), whichever
    folder of the project a command starts in; outside a project, the user's state folder."""
    monkeypatch.delenv("GBQ_HOME", raising=False)
    project = tmp_path / "shop"
    deep = project / "src" / "checkout"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    for folder in (project, deep):
        monkeypatch.chdir(folder)
        assert load_publisher_settings().home == project / ".gbq"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert load_publisher_settings().home == tmp_path / "state" / "gameball-queue"


def test_no_annotation_is_left_unwalked() -> None:
    """The annotations BY_TYPE knows are the ones settings use (besides the named fields)."""
    kinds = {
        Settings.model_fields[name].annotation
        for name in Settings.model_fields
        if name not in BY_FIELD and name not in ACCEPTS_ANY_TEXT
    }
    assert kinds <= set(BY_TYPE), kinds - set(BY_TYPE)
    assert typing.get_args(Settings.model_fields["log_level"].annotation)


def test_the_compose_sandbox_keys_reach_only_the_compose_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docker-compose.yml's default keys are the compose sandbox's: with its base URL
    (the `sandbox` service) they work; with Gameball's they are refused, so the stack
    started without the account's keys never passes `gbq status` against Gameball."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-gbq"]["environment"]

    def default(variable: str) -> str:
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", env[variable])
        assert match is not None, env[variable]
        assert match.group(1) == variable
        return match.group(2)

    assert default("GBQ_GAMEBALL_API_KEY") == COMPOSE_SANDBOX_API_KEY
    assert default("GBQ_GAMEBALL_SECRET_KEY") == COMPOSE_SANDBOX_SECRET_KEY
    monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", COMPOSE_SANDBOX_API_KEY)
    monkeypatch.setenv("GBQ_GAMEBALL_SECRET_KEY", COMPOSE_SANDBOX_SECRET_KEY)
    monkeypatch.setenv("GBQ_GAMEBALL_BASE_URL", default("GBQ_GAMEBALL_BASE_URL"))
    assert load_settings().gameball_base_url == "http://sandbox:8099"
    for url in ("https://api.gameball.co", "http://sandbox.example.com:8099", "http://8.8.8.8"):
        monkeypatch.setenv("GBQ_GAMEBALL_BASE_URL", url)
        with pytest.raises(SettingsError, match="compose sandbox's key"):
            load_settings()
    monkeypatch.setenv("GBQ_GAMEBALL_API_KEY", "live-key")
    with pytest.raises(SettingsError):  # the secret key is still the compose one
        load_settings()
