"""Alembic environment for the ledger (run through ``gbq migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.ledger.engine import create_ledger_engine
from worker.ledger.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    engine = create_ledger_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
