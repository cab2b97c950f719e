"""``gbq publish FILE|-``: publish events from JSON, validated field by field; with
``--replace``, corrected events take the place of dead letters with the same ids."""

from __future__ import annotations

from typing import Annotated

import redis
import typer
from sqlalchemy.exc import SQLAlchemyError

from producers.events import Event, InvalidEventError
from producers.publisher import Publisher, PublishError
from producers.transport import redis_client
from worker.coordination.liveness import alive
from worker.coordination.queue import RedisQueue
from worker.ledger.deadletters import DeadLetters
from worker.ledger.engine import create_ledger_engine
from worker.ledger.repository import Ledger
from worker.ledger.schema import LedgerNotMigratedError, ensure_migrated
from worker.ops import repair
from worker.ops.cli.common import ExitCode, fail, ledger_engine, redis_url, sqlite_file
from worker.ops.cli.eventfile import read_events
from worker.settings import Settings, load_settings, redact_url

BATCH = 500


def run(
    source: Annotated[
        str,
        typer.Argument(
            help="A file of JSON (one object, an array, JSON lines, or `gbq dlq export` "
            "lines), or - for standard input."
        ),
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="An event whose id is a dead letter replaces it (same id, history kept) "
            "and is sent; new ids are published.",
        ),
    ] = False,
    known_ok: Annotated[
        bool,
        typer.Option("--known-ok", help="Events the ledger already has are not an error."),
    ] = False,
) -> None:
    """Validate events and publish the valid ones (Redis, or the local spool if Redis is
    down). Every refused event is reported with its fields. An event whose id the ledger
    already has is not queued again ("already known (state)"): an event id stands for one
    event. To correct a dead letter, use --replace. Exit 1 if anything was refused or
    already known (unless --known-ok).

    Examples:

      gbq publish events.jsonl

      gbq dlq export --events --code 7 -o dead.jsonl   # then correct dead.jsonl

      gbq publish --replace dead.jsonl

      echo '{"kind": "paid", ...}' | gbq publish -
    """
    settings = load_settings()
    events, refused = read_events(source)
    known = _known_states(settings, events)
    replaced = 0
    if replace and known:
        dead = [e for e in events if known.get(e.event_id) == "dead"]
        replaced = replace_dead_letters(settings, dead)
    fresh = [e for e in events if e.event_id not in known]
    for event in events:
        state = known.get(event.event_id)
        if state is not None and not (replace and state == "dead"):
            typer.echo(f"{event.event_id}: already known ({state}), not re-queued", err=True)
    destinations = _publish(settings, fresh)
    if destinations.get("queued"):
        _warn_if_nobody_reads(settings)
    detail = ", ".join(f"{count} {where}" for where, count in destinations.items())
    skipped = len(events) - len(fresh) - replaced
    typer.echo(
        f"accepted {len(fresh)}"
        + (f" ({detail})" if detail else "")
        + (f", replaced {replaced}" if replace else "")
        + (f", already known {skipped}" if skipped else "")
        + f", refused {refused}"
    )
    if refused or not events or (skipped and not known_ok):
        raise typer.Exit(int(ExitCode.NOTHING))


def replace_dead_letters(settings: Settings, events: list[Event]) -> int:
    """Replace and send; prints what could not be replaced; returns how many were."""
    letters = DeadLetters(Ledger(ledger_engine(settings)))
    queue = RedisQueue(redis_client(redis_url(settings, must_answer=True), 10.0))
    done = repair.replace(letters, queue, events)
    for event_id, why in done.skipped:
        typer.echo(f"{event_id}: {why}", err=True)
    if done.redis_error:
        fail(done.summary())
    return done.retried


def _known_states(settings: Settings, events: list[Event]) -> dict[str, str]:
    """The ledger's state of each event it already has. A ledger that cannot be read is a
    warning: publishing still works (the worker keeps the first content of a known id)."""
    if not events:
        return {}
    url = settings.effective_database_url()
    missing = sqlite_file(url)
    if missing is not None and not missing.exists():
        return {}  # no ledger yet: nothing is known
    engine = create_ledger_engine(url)
    try:
        ensure_migrated(engine)
        return Ledger(engine).states_of([event.event_id for event in events])
    except (SQLAlchemyError, LedgerNotMigratedError) as error:
        first = str(error).splitlines()[0]
        typer.echo(f"warning: cannot check the ledger for known ids ({first})", err=True)
        return {}
    finally:
        engine.dispose()


def _warn_if_nobody_reads(settings: Settings) -> None:
    """Say so when no worker beats on this Redis: run from another folder, gbq finds
    another GBQ_HOME (another embedded Redis) that no worker will ever read."""
    url = settings.effective_redis_url()
    client = redis_client(url, 5.0)
    try:
        if alive(client, limit=1):
            return
    except (redis.RedisError, OSError):
        return  # it just took the events; a failure now says nothing about workers
    finally:
        client.close()
    embedded = settings.redis_url is None
    where = f"the embedded Redis in {settings.home}" if embedded else redact_url(url)
    typer.echo(
        f"warning: no gbq worker is running against {where}: the events wait there until "
        "one does (gbq worker with the same GBQ_REDIS_URL, or GBQ_HOME for the embedded "
        "Redis; gbq local status shows this folder's)",
        err=True,
    )


def _publish(settings: Settings, events: list[Event]) -> dict[str, int]:
    destinations: dict[str, int] = {}
    if not events:
        return destinations
    try:
        with Publisher(settings) as publisher:
            for start in range(0, len(events), BATCH):
                batch = events[start : start + BATCH]
                where = publisher.publish_many(batch)
                destinations[where] = destinations.get(where, 0) + len(batch)
    except InvalidEventError as error:  # ids clashing within the file, or with the inbox
        fail(f"refused: {error}", ExitCode.NOTHING)
    except (PublishError, RuntimeError) as error:
        fail(str(error))
    return destinations
