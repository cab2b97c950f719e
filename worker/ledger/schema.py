"""Migrations: ``gbq migrate`` applies them; everything else refuses an unmigrated ledger.

No process migrates on its own. Several workers starting
at once must not race to alter tables, and production deploys run migrations as a step
of their own (the compose file has a migrations job). A process that finds the ledger
behind says which command to run.

    LedgerNotMigratedError(RuntimeError)   the ledger is missing or behind the code
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from worker.settings import redact_url

MIGRATIONS = Path(__file__).with_name("migrations")


class LedgerNotMigratedError(RuntimeError):
    """The ledger's schema is not at the code's revision."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the ledger to ``revision`` (the latest by default); returns (before, after)."""
    before = current_revision(engine)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return before, head_revision() if revision == "head" else revision


def ensure_migrated(engine: Engine) -> None:
    """Raise :class:`LedgerNotMigratedError` naming the command to run if behind."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = redact_url(engine.url.render_as_string(hide_password=False))
        raise LedgerNotMigratedError(
            f"the ledger at {where} is at revision {current or 'none (empty)'}, "
            f"this code needs {head}: run `gbq migrate` (with the same GBQ_DATABASE_URL)"
        )
