"""``gbq status``: is delivery healthy, and if not, why."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import redis
import typer

from producers.keys import INBOX_KEY
from producers.spool import Spool
from producers.transport import redis_client
from producers.untrusted import printable
from worker.coordination.ratelimit import RateLimiter, RateLimits
from worker.ops.cli.common import ExitCode, fail, ledger_engine, redis_url
from worker.ops.status import StatusReport, collect
from worker.rules.states import SENDABLE
from worker.settings import Settings, key_fingerprint, load_settings


def _left(report: StatusReport, client: redis.Redis) -> tuple[int, str]:
    """How many events are left to send, and what they are (empty when none is)."""
    inbox = int(client.hlen(INBOX_KEY))
    counts = {state: report.events.get(state, 0) for state in SENDABLE}
    left = inbox + sum(counts.values())
    parts = [f"{state.replace('_', ' ')} {count}" for state, count in counts.items() if count]
    if inbox:
        parts.append(f"not yet ingested {inbox}")
    breaker = report.breaker["state"]
    said = ", ".join(parts) + ("" if breaker == "closed" else f"; breaker {breaker}")
    return left, said


def _wait_line(left: int, said: str, waited_s: float, wait_s: float) -> str:
    return f"waiting ({waited_s:.0f}s of {wait_s:g}s): {left} event(s) to send: {said}"


PROGRESS_EVERY_S = 5.0


def run(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    wait_s: Annotated[
        float | None,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="First wait until nothing is left to send (the inbox empty, nothing "
            "pending, in flight or retrying), at most this long, saying on stderr what is "
            "left; exit 1 if it never is.",
            min=0,
        ),
    ] = None,
) -> None:
    """Where deliveries go, events per state, the oldest sendable and waiting events, dead
    letters by reason, the circuit breaker and why, rate-limit backlog, deliveries in the
    last minute, the scheduler leader.

    Examples:

      gbq status

      gbq status --json | jq .breaker

      gbq status --wait 60   # after publishing: report once everything went out
    """
    settings = load_settings()
    engine = ledger_engine(settings)
    client = redis_client(redis_url(settings, must_answer=True), 5.0)
    limiter = RateLimiter(client, RateLimits.from_settings(settings))
    spool = Spool(settings.effective_spool_path)
    started = time.monotonic()
    timed_out, last_said, said_at = False, "", -PROGRESS_EVERY_S
    try:
        report = collect(engine, client, limiter, spool)
        while wait_s is not None:
            left, said = _left(report, client)
            if not left:
                break
            waited = time.monotonic() - started
            if waited > wait_s:
                typer.echo(f"still sending after {wait_s:g}s: {left} left ({said})", err=True)
                timed_out = True
                break
            # What it waits for, on stderr: when it changes, at most once a second, and
            # every few seconds while it does not (a pipe or CI log shows it is alive).
            now = time.monotonic()
            if (said != last_said and now - said_at >= 1) or now - said_at >= PROGRESS_EVERY_S:
                typer.echo(_wait_line(left, said, waited, wait_s), err=True)
                last_said, said_at = said, now
            time.sleep(0.2)  # polling the ledger, bounded by --wait
            report = collect(engine, client, limiter, spool)
    except redis.RedisError as error:
        fail(f"cannot read status from Redis: {error}")
    where = {
        "gameball": {
            "base_url": settings.gameball_base_url,
            "api_version": settings.gameball_api_version,
            "key": key_fingerprint(settings.gameball_api_key),
        },
        "home": str(settings.home),
    }
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), **where}, indent=2))
    else:
        _print(report, settings)
    if timed_out:
        raise typer.Exit(int(ExitCode.NOTHING))


def _print(report: StatusReport, settings: Settings) -> None:
    # Plain lines, no rich: `gbq status` is the command people run most, and answers in
    # well under a second (bench/results/cli.md).
    out = typer.echo
    out(f"delivering to {settings.endpoint()}")
    out(f"local state (GBQ_HOME): {settings.home}")
    out("events:")
    for state in ("pending", "in_flight", "scheduled", "waiting", "delivered", "dead"):
        out(f"  {state:<10} {report.events.get(state, 0):>9,}")
    for what, age in (
        ("oldest sendable", report.oldest_sendable_age_s),
        ("oldest waiting for an earlier event of its order", report.oldest_waiting_age_s),
    ):
        out(f"{what}: {'none' if age is None else f'{age:.0f}s old'}")
    dead = ", ".join(f"{reason}={count}" for reason, count in report.dead_by_reason.items())
    out(f"dead letters: {dead or 'none'}")
    out(f"delivered in the last minute: {report.delivered_last_minute}")
    breaker = report.breaker
    out(f"circuit breaker: {breaker['state']} — {breaker['explanation']}")
    windows = report.rate_limit_backlog_s
    ahead = ", ".join(f"{k} window {v:.1f}s ahead" for k, v in windows.items() if v >= 0.05)
    out(f"rate limit: {ahead or ('no window ahead' if windows else 'off')}")
    out(f"scheduler leader: {report.scheduler_leader or 'none running'}")
    if report.spooled_here:
        out(f"spooled on this host, waiting for Redis: {report.spooled_here}")
    for spool in report.spools:
        out(spool_line(spool))
    if report.conflicts:
        out(
            f"events published again with other content: {report.conflicts} "
            "(the first content is kept; `gbq events <order>` shows the other)"
        )
    if report.quarantined:
        out(f"unreadable input waiting to become dead letters: {report.quarantined}")
    if report.parked_redemptions:
        out(
            f"redeemed points parked for you to settle: {report.parked_redemptions} "
            "(`gbq redemptions list`)"
        )
    if report.inbox_kept:
        out(
            f"inbox entries kept until the ledger's standbys have them: {report.inbox_kept} "
            "(GBQ_LEDGER_STANDBYS; growing: no standby confirms)"
        )


def spool_line(spool: dict[str, Any]) -> str:
    """One host's spool: how many, how old, and when its relayer last reported."""
    oldest = spool["oldest_age_s"]
    age = "" if oldest is None else f", oldest {oldest:.0f}s old"
    return (
        f"spooled on {printable(spool['host'], 100)} ({printable(spool['path'], 200)}): "
        f"{spool['count']} event(s){age}; reported {spool['seen_age_s']:.0f}s ago"
    )
