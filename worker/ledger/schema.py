"""Migrations: ``gbq migrate`` applies them; everything else refuses an unmigrated ledger.

No process migrates on its own. Several workers starting
at once must not race to alter tables, and production deploys run migrations as a step
of their own (the compose file has a migrations job). A process that finds the ledger
behind says which command to run.

    LedgerNotMigratedError(RuntimeError)   the ledger is missing or behind the code
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from worker.settings import redact_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration's revision (a test holds it equal to alembic's head): every command
# checks the ledger against it without importing alembic, which costs a CLI call a
# quarter of a second; only `gbq migrate` loads alembic.
HEAD_REVISION = "0010"


class LedgerNotMigratedError(RuntimeError):
    """The ledger's schema is not at the code's revision."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - only to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration, as alembic reads the migrations folder."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - only to migrate

    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The ledger's revision, as alembic records it (None: an empty database)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        found = list(revisions)
    return str(found[0]) if len(found) == 1 else None


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the ledger to ``revision`` (the latest by default); returns (before, after)."""
    from alembic import command  # noqa: PLC0415 - only to migrate

    before = current_revision(engine)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return before, head_revision() if revision == "head" else revision


def ensure_migrated(engine: Engine) -> None:
    """Raise :class:`LedgerNotMigratedError` naming the command to run if behind."""
    current, head = current_revision(engine), HEAD_REVISION
    if current != head:
        where = redact_url(engine.url.render_as_string(hide_password=False))
        raise LedgerNotMigratedError(
            f"the ledger at {where} is at revision {current or 'none (empty)'}, "
            f"this code needs {head}: run `gbq migrate` (with the same GBQ_DATABASE_URL)"
        )
