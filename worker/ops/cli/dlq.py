"""``gbq dlq``: find what failed, see why, fix, retry in bulk, safely."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from producers.transport import redis_client
from producers.untrusted import UnreadableError, load_json, printable
from worker.coordination.queue import RedisQueue
from worker.ledger.deadletters import DeadFilter, DeadLetters
from worker.ledger.models import EventRow
from worker.ledger.repository import Ledger
from worker.ops import repair
from worker.ops.cli.common import ExitCode, console, fail, ledger_engine, redis_url
from worker.ops.cli.eventfile import read_events
from worker.ops.cli.publish import replace_dead_letters
from worker.ops.cli.tables import Column, Wide, moment, show_id, table, table_console
from worker.rules.timespec import TimeSpecError, parse_duration, parse_moment
from worker.settings import load_settings

app = typer.Typer(
    help="The dead-letter queue: list, show, retry, purge, export. "
    "Uses GBQ_DATABASE_URL (and GBQ_REDIS_URL to retry).",
    no_args_is_help=True,
)

Order = Annotated[str | None, typer.Option("--order", help="Only this order id.")]
Kind = Annotated[
    str | None, typer.Option("--kind", help="paid, cancelled, refunded, cashback or malformed.")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="rejected, expired, blocked, malformed or currency.")
]
Code = Annotated[int | None, typer.Option("--code", help="Gameball's error code, e.g. 304.")]
Since = Annotated[
    str | None, typer.Option("--since", help="Died since: a duration ago (2h, 3d) or an ISO time.")
]
Until = Annotated[
    str | None, typer.Option("--until", help="Died before: a duration ago or an ISO time.")
]


def _filter(
    event_ids: list[str] | None,
    order: str | None,
    kind: str | None,
    reason: str | None,
    code: int | None,
    since: str | None,
    until: str | None,
    older_than: str | None = None,
) -> DeadFilter:
    now = datetime.now(UTC)
    try:
        since_at = parse_moment(since, now) if since else None
        until_at = parse_moment(until, now) if until else None
        if older_than:
            cutoff = now - parse_duration(older_than)
            until_at = cutoff if until_at is None else min(until_at, cutoff)
    except TimeSpecError as error:
        raise typer.BadParameter(str(error)) from None
    return DeadFilter(tuple(event_ids or ()), order, kind, reason, code, since_at, until_at)


def _dead_letters() -> DeadLetters:
    return DeadLetters(Ledger(ledger_engine(load_settings())))


def as_json(row: EventRow) -> dict[str, Any]:
    """A dead letter for scripts: the event as published (no secrets exist in events), or,
    for a malformed one, its raw bytes as an escaped string (never parsed), with their
    length, SHA-256 and base64."""
    if row.kind == "malformed":
        return {**_fields(row), "event": None, **_raw(row)}
    event: Any
    try:
        event = load_json(row.payload)
    except UnreadableError:
        event = printable(row.payload, 10_000)
    return {**_fields(row), "event": event}


def _raw(row: EventRow) -> dict[str, Any]:
    raw = row.raw if row.raw is not None else row.payload.encode("utf-8", "surrogatepass")
    return {
        "raw": printable(raw, len(raw)),
        "raw_length": row.raw_length if row.raw_length is not None else len(raw),
        "raw_sha256": row.raw_sha256,
        "raw_base64": base64.b64encode(raw).decode(),
    }


def _fields(row: EventRow) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "kind": row.kind,
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "reason": row.dead_reason,
        "gameball_status": row.last_status,
        "gameball_code": row.last_code,
        "message": row.last_message,
        "attempts": row.attempts,
        "died_at": row.updated_at.isoformat(),
    }


def _age(moment: datetime) -> str:
    seconds = (datetime.now(UTC) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _table(rows: list[EventRow], title: str, *, wide: bool) -> Table:
    columns = [
        Column("event", "id"),
        Column("reason"),
        Column("code", "number"),
        Column("message"),
        Column("tries", "number"),
        Column("died", "time"),
    ]
    made = table(title, columns, wide=wide)
    for row in rows:
        made.add_row(
            show_id(row.event_id, wide=wide),
            row.dead_reason or "",
            str(row.last_code or ""),
            printable(row.last_message or "", 1000 if wide else 80),
            str(row.attempts),
            moment(row.updated_at, wide=True) if wide else _age(row.updated_at),
        )
    return made


@app.command("list")
def list_(
    order: Order = None,
    kind: Kind = None,
    reason: ReasonOpt = None,
    code: Code = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 50,
    json_: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    wide: Wide = False,
) -> None:
    """Dead letters, newest first. Exit 1 if none match.

    Examples:

      gbq dlq list --reason rejected --since 2h

      gbq dlq list --code 304 --jsonl | jq .event_id
    """
    dead = _filter(None, order, kind, reason, code, since, until)
    letters = _dead_letters()
    rows, total = letters.find(dead, limit), letters.count(dead)
    if json_ or jsonl:
        payload = [as_json(row) for row in rows]
        typer.echo(
            json.dumps(payload, indent=2)
            if json_
            else "\n".join(json.dumps(item) for item in payload)
        )
    elif rows:
        table_console(wide=wide).print(
            _table(rows, f"dead letters ({len(rows)} of {total})", wide=wide)
        )
    else:
        typer.echo("no dead letters match", err=True)
    if not rows:
        raise typer.Exit(int(ExitCode.NOTHING))


@app.command()
def show(
    event_id: Annotated[str, typer.Argument(help="The event id, e.g. paid:ORD-1.")],
    wide: Wide = False,
) -> None:
    """One dead letter: the event, every attempt with Gameball's answer, why it died, and
    the refunds it blocked.

    Example:

      gbq dlq show paid:ORD-1
    """
    letters = _dead_letters()
    rows = letters.find(DeadFilter(event_ids=(event_id,)))
    if not rows:
        fail(f"{event_id} is not a dead letter (see `gbq events` for its order)", ExitCode.NOTHING)
    row = rows[0]
    out = table_console(wide=wide)
    out.print(
        f"{row.event_id}  dead: {row.dead_reason}  "
        f"(died {_age(row.updated_at)}, {row.attempts} attempts)"
    )
    out.print(
        f"last answer: {printable(row.last_message or '-')} "
        f"(HTTP {row.last_status or '-'}, code {row.last_code or '-'})"
    )
    if row.kind == "malformed":
        raw = _raw(row)
        out.print(f"raw ({raw['raw_length']} bytes, sha256 {raw['raw_sha256']}), escaped:")
        out.print(printable(raw["raw"], 4000), soft_wrap=True)
    else:
        out.print(json.dumps(as_json(row)["event"], indent=2))
    columns = [
        Column("#", "number"),
        Column("at", "time"),
        Column("took", "number"),
        Column("outcome"),
        Column("HTTP", "number"),
        Column("code", "number"),
        Column("message"),
    ]
    attempts = table("attempts", columns, wide=wide)
    for attempt in letters.ledger.attempts_of(row.event_id):
        attempts.add_row(
            str(attempt.attempt_no),
            moment(attempt.started_at, wide=wide),
            f"{attempt.duration_s:.2f}s",
            f"{attempt.outcome}/{attempt.reason}",
            str(attempt.status or ""),
            str(attempt.code or ""),
            printable(attempt.message or "", 1000 if wide else 100),
        )
    out.print(attempts)
    blocked = letters.blocked_by(row)
    if blocked:
        out.print(
            "blocked by it (retrying it releases them): " + ", ".join(b.event_id for b in blocked)
        )


@app.command()
def retry(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids to retry.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter the filters match.")
    ] = False,
    order: Order = None,
    kind: Kind = None,
    reason: ReasonOpt = None,
    code: Code = None,
    since: Since = None,
    until: Until = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be retried.")
    ] = False,
    replace: Annotated[
        str | None,
        typer.Option(
            "--replace",
            metavar="FILE",
            help="Corrected events (JSON, JSON lines or `gbq dlq export --events` output, "
            "- for stdin): each replaces the dead letter with its id and is sent.",
        ),
    ] = None,
) -> None:
    """Send dead letters again, with the same ids (Gameball answers "already exists" for
    any that had in fact been applied: no double reward). Retrying a dead paid event also
    releases the refunds it blocked, which then go after it, in order. With --replace,
    corrected events go in place of the dead letters with their ids (their attempts stay in
    the history, numbering continues).

    Examples:

      gbq dlq retry paid:ORD-1

      gbq dlq retry --all --reason expired --since 1d --dry-run

      gbq dlq retry --replace fixed.jsonl
    """
    filters = (order, kind, reason, code, since, until)
    if replace is not None:
        if event_ids or all_ or any(value is not None for value in filters) or dry_run:
            raise typer.BadParameter("--replace takes a file only, no ids or filters")
        _retry_replacing(replace)
        return
    if not event_ids and not all_:
        raise typer.BadParameter("name event ids, or pass --all (with filters if you like)")
    if event_ids and (all_ or any(value is not None for value in filters)):
        raise typer.BadParameter("either event ids or --all with filters, not both")
    letters = _dead_letters()
    chosen = letters.ids(_filter(event_ids, *filters))
    for event_id in sorted(set(event_ids or ()) - set(chosen)):
        typer.echo(f"skipped {event_id}: not a dead letter", err=True)
    if not chosen:
        fail("no dead letters match", ExitCode.NOTHING)
    if dry_run:
        for event_id in chosen:
            typer.echo(f"would retry {event_id}")
        typer.echo(f"{len(chosen)} dead letter(s) would be retried (dry run: nothing changed)")
        return
    _send_retries(letters, chosen)


def _send_retries(letters: DeadLetters, chosen: list[str]) -> None:
    queue = RedisQueue(redis_client(redis_url(load_settings(), must_answer=True), 10.0))
    with Progress(console=console(stderr=True), transient=True) as progress:
        task = progress.add_task("retrying", total=len(chosen))
        done = repair.retry(letters, queue, chosen, lambda n: progress.advance(task, n))
    for malformed, event_id in done.recovered:
        typer.echo(f"recovered {malformed} as {event_id}", err=True)
    for event_id, why in done.skipped:
        typer.echo(f"skipped {event_id}: {why}", err=True)
    if done.redis_error:
        fail(done.summary())
    typer.echo(done.summary().replace(f", skipped {len(done.skipped)}", ""))
    if done.skipped and done.retried + done.released == 0:
        raise typer.Exit(int(ExitCode.NOTHING))


def _retry_replacing(source: str) -> None:
    events, refused = read_events(source)
    settings = load_settings()
    replaced = replace_dead_letters(settings, events) if events else 0
    typer.echo(f"replaced and retried {replaced} dead letter(s), refused {refused}")
    if refused or replaced < len(events) or not events:
        raise typer.Exit(int(ExitCode.NOTHING))


@app.command()
def purge(
    order: Order = None,
    kind: Kind = None,
    reason: ReasonOpt = None,
    code: Code = None,
    since: Since = None,
    until: Until = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only those dead for longer than this (7d, 12h)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted.")
    ] = False,
) -> None:
    """Delete dead letters for good (export them first if in doubt). Asks for confirmation
    unless --yes.

    Examples:

      gbq dlq purge --older-than 30d --dry-run

      gbq dlq purge --reason malformed --yes
    """
    dead = _filter(None, order, kind, reason, code, since, until, older_than)
    letters = _dead_letters()
    count = letters.count(dead)
    if count == 0:
        fail("no dead letters match", ExitCode.NOTHING)
    if dry_run:
        typer.echo(f"{count} dead letter(s) would be deleted (dry run: nothing changed)")
        return
    if not yes:
        try:
            typer.confirm(f"Delete {count} dead letter(s) for good?", abort=True)
        except typer.Abort:
            fail(
                "nothing deleted (not confirmed); pass --yes to skip the question", ExitCode.NOTHING
            )
    typer.echo(f"deleted {letters.purge(dead)} dead letter(s)")


@app.command()
def export(
    order: Order = None,
    kind: Kind = None,
    reason: ReasonOpt = None,
    code: Code = None,
    since: Since = None,
    until: Until = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
    events_only: Annotated[
        bool,
        typer.Option(
            "--events",
            help="Only the events, one per line: what `gbq publish --replace` and "
            "`gbq dlq retry --replace` read back once corrected.",
        ),
    ] = False,
) -> None:
    """Dead letters as JSON lines: the events as published, with why they died.

    Examples:

      gbq dlq export --since 7d -o dead.jsonl

      gbq dlq export --events --code 7 -o fix.jsonl   # correct it, then:

      gbq dlq retry --replace fix.jsonl
    """
    rows = _dead_letters().find(_filter(None, order, kind, reason, code, since, until))
    if events_only:
        malformed = [row.event_id for row in rows if row.kind == "malformed"]
        for event_id in malformed:
            typer.echo(f"skipped {event_id}: malformed, it holds no event", err=True)
        rows = [row for row in rows if row.kind != "malformed"]
    lines = "".join(
        json.dumps(as_json(row)["event"] if events_only else as_json(row)) + "\n" for row in rows
    )
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines)
        typer.echo(f"exported {len(rows)} dead letter(s) to {output}", err=True)
    if not rows:
        raise typer.Exit(int(ExitCode.NOTHING))
