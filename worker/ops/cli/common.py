"""What the command modules share: exit codes and one-line errors for expected failures."""

from __future__ import annotations

import logging
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import redis
import typer
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from producers.transport import redis_client
from worker.ledger.engine import create_ledger_engine
from worker.ledger.schema import LedgerNotMigratedError, ensure_migrated
from worker.process.logs import is_json, say
from worker.settings import Settings, redact_url

if TYPE_CHECKING:
    from rich.console import Console


class ExitCode(IntEnum):
    OK = 0
    NOTHING = 1  # nothing matched, or some input refused
    USAGE = 2
    UNREACHABLE = 3  # Redis or the database cannot be used


def fail(message: str, code: ExitCode = ExitCode.UNREACHABLE) -> NoReturn:
    if is_json():  # a long-running process that logs JSON: its last line is one too
        say(message, level=logging.ERROR)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


def warn(message: str) -> None:
    if is_json():
        say(message, level=logging.WARNING)
    else:
        typer.echo(f"warning: {message}", err=True)


def console(*, stderr: bool = False) -> Console:
    """Output that shows data as it is: event ids like ``refunded:A:R1`` are not emoji
    codes, and Gameball's messages are not markup."""
    from rich.console import Console  # noqa: PLC0415 - only the commands that draw tables

    return Console(stderr=stderr, emoji=False, markup=False, highlight=False)


def env_help(text: str, variable: str) -> str:
    return f"{text} (env: {variable})"


def ledger_engine(settings: Settings, *, migrated: bool = True) -> Engine:
    """The ledger's engine, checked to be reachable (and migrated unless told otherwise)."""
    url = settings.effective_database_url()
    missing = sqlite_file(url)
    if migrated and missing is not None and not missing.exists():
        fail(f"no ledger at {missing} yet: run `gbq migrate` (GBQ_HOME is {settings.home})")
    engine = create_ledger_engine(url)
    try:
        if migrated:
            ensure_migrated(engine)
        else:
            with engine.connect():
                pass
    except LedgerNotMigratedError as error:
        fail(str(error))
    except (SQLAlchemyError, OSError) as error:
        fail(
            f"cannot use the database at {redact_url(url)}: {type(error).__name__}: "
            f"{str(error).splitlines()[0]}"
        )
    return engine


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def redis_url(settings: Settings, *, must_answer: bool) -> str:
    """Redis's URL. Long-running processes only warn when it does not answer yet: they keep
    retrying, and a brief Redis outage must not stop them (or their supervisor)."""
    try:
        url = settings.effective_redis_url()
    except (RuntimeError, OSError) as error:
        fail(f"cannot start the embedded Redis: {error}")
    client = redis_client(url, 5.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        message = f"cannot reach Redis at {redact_url(url)}: {type(error).__name__}: {error}"
        if must_answer:
            fail(message)
        warn(f"{message}; retrying in the background")
    finally:
        client.close()
    return url
