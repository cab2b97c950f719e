"""The operator CLI against a real ledger and Redis: dlq, events, publish, status."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from harness.processes import GBQ, SandboxProcess, free_port
from harness.stack import Stack
from producers.events import CashbackAwarded, Event, OrderPaid, OrderRefunded
from producers.keys import ALIVE_PREFIX, INBOX_KEY, QUEUE
from producers.quarantine import Poison
from worker.ledger.core import AttemptRecord, new_event
from worker.ledger.engine import create_ledger_engine
from worker.ledger.redemptions import ParkedRedemption, Redemptions
from worker.ledger.repository import Ledger
from worker.rules.outcomes import Outcome, OutcomeKind, Reason
from worker.rules.retry import Transition
from worker.rules.states import DeadReason, EventState

pytestmark = pytest.mark.integration
API_KEY, SECRET_KEY = "cli-test-APIKEY-77aa", "cli-test-SECRET-99bb"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
NOW = datetime.now(UTC)


@dataclass
class Cli:
    env: dict[str, str]
    outputs: list[str]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*GBQ, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        return result


def die(
    ledger: Ledger,
    event: Event,
    *,
    code: int | None,
    message: str,
    reason: DeadReason = DeadReason.REJECTED,
    died: datetime = NOW,
) -> None:
    """Put ``event`` in the ledger as a dead letter after one attempt."""
    ledger.ingest([new_event(event, None)], died)
    ledger.claim(event.event_id, "w", died, died + timedelta(seconds=60))
    outcome = Outcome(OutcomeKind.DEAD, Reason.REJECTED, message, 422, code)
    ledger.record_attempt(
        event.event_id,
        "w",
        AttemptRecord(1, "w", died, 0.02, outcome),
        Transition(EventState.DEAD, dead_reason=reason),
        died,
    )


@pytest.fixture
def cli(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cli]:
    env = {
        **os.environ,
        "GBQ_DATABASE_URL": database_url,
        "GBQ_REDIS_URL": redis_url,
        "GBQ_HOME": str(tmp_path / "var"),
        "GBQ_GAMEBALL_API_KEY": API_KEY,
        "GBQ_GAMEBALL_SECRET_KEY": SECRET_KEY,
        "COLUMNS": "200",
    }
    runner = Cli(env, [])
    yield runner
    leaks = [text for text in runner.outputs if API_KEY in text or SECRET_KEY in text]
    assert leaks == []  # no secret in any output, whatever the command


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger = Ledger(create_ledger_engine(database_url))
    paid_a = OrderPaid(
        order_id="A",
        customer_id="c",
        occurred_at=T0,
        total_price=Decimal(10),
        total_paid=Decimal(10),
    )
    refund_a = OrderRefunded(
        order_id="A",
        refund_id="A-R1",
        customer_id="c",
        occurred_at=T0 + timedelta(minutes=1),
        amount=Decimal(2),
    )
    cashback = CashbackAwarded(
        transaction_id="CB-1", customer_id="d", occurred_at=T0, amount=Decimal(5)
    )
    old = CashbackAwarded(
        transaction_id="CB-OLD",
        customer_id="d",
        occurred_at=T0 - timedelta(days=60),
        amount=Decimal(5),
    )
    die(ledger, paid_a, code=304, message="Transaction Time Already Exists")
    ledger.ingest([new_event(refund_a, None)], NOW)
    ledger.block_order("A", NOW)
    die(
        ledger,
        cashback,
        code=None,
        message="gave up",
        reason=DeadReason.EXPIRED,
        died=NOW - timedelta(hours=5),
    )
    die(
        ledger,
        old,
        code=None,
        message="gave up",
        reason=DeadReason.EXPIRED,
        died=NOW - timedelta(days=40),
    )
    ledger.dead_letter_poison(Poison.of("queue gbq", "not JSON", "{not an event"), NOW)
    yield ledger
    ledger.engine.dispose()


def test_dlq_list_filters_and_formats(cli: Cli, ledger: Ledger) -> None:
    """Filters narrow the list; --json/--jsonl for scripts; exit 1 when nothing matches."""
    table = cli("dlq", "list")
    assert table.returncode == 0
    assert "paid:A" in table.stdout
    assert "Transaction Time Already Exists" in table.stdout
    assert "dead letters (5 of 5)" in table.stdout
    by_code = json.loads(cli("dlq", "list", "--code", "304", "--json").stdout)
    assert [row["event_id"] for row in by_code] == ["paid:A"]
    assert by_code[0]["event"]["total_paid"] == "10"
    lines = cli("dlq", "list", "--reason", "expired", "--jsonl").stdout.splitlines()
    assert sorted(json.loads(line)["event_id"] for line in lines) == [
        "cashback:CB-1",
        "cashback:CB-OLD",
    ]
    recent = json.loads(cli("dlq", "list", "--since", "1d", "--reason", "expired", "--json").stdout)
    assert [row["event_id"] for row in recent] == ["cashback:CB-1"]
    older = json.loads(cli("dlq", "list", "--until", "1d", "--json").stdout)
    assert [row["event_id"] for row in older] == ["cashback:CB-OLD"]
    assert [
        r["event_id"]
        for r in json.loads(
            cli("dlq", "list", "--order", "A", "--kind", "refunded", "--json").stdout
        )
    ] == ["refunded:A:A-R1"]
    newest_first = json.loads(cli("dlq", "list", "--json", "--limit", "2").stdout)
    assert len(newest_first) == 2
    assert "cashback:CB-OLD" not in {row["event_id"] for row in newest_first}
    nothing = cli("dlq", "list", "--order", "NOPE")
    assert (nothing.returncode, nothing.stdout) == (1, "")
    bad = cli("dlq", "list", "--since", "yesterday")
    assert bad.returncode == 2
    assert "2h" in bad.stderr


def test_dlq_show(cli: Cli, ledger: Ledger) -> None:
    """The event, its attempts with Gameball's answer, and what it blocked."""
    shown = cli("dlq", "show", "paid:A")
    assert shown.returncode == 0
    for text in (
        "rejected",
        "Transaction Time Already Exists",
        "304",
        "refunded:A:A-R1",
        '"order_id": "A"',
    ):
        assert text in shown.stdout
    assert cli("dlq", "show", "paid:NOPE").returncode == 1


def test_dlq_retry_dry_run_changes_nothing_and_retry_requeues(
    cli: Cli, ledger: Ledger, redis_url: str
) -> None:
    """--dry-run lists; a real retry puts the paid event and what it blocked back."""
    dry = cli("dlq", "retry", "--all", "--order", "A", "--dry-run")
    assert dry.returncode == 0
    assert "would retry paid:A" in dry.stdout
    assert ledger.counts_by_state() == {"dead": 5}
    client = redis.Redis.from_url(redis_url)
    assert client.llen(QUEUE) == 0
    done = cli("dlq", "retry", "paid:A", "malformed:nothing")
    assert done.returncode == 0
    assert "retried 1 dead letter(s), released 1 blocked event(s)" in done.stdout
    assert "skipped malformed:nothing: not a dead letter" in done.stderr
    assert client.llen(QUEUE) == 2
    row = ledger.get("paid:A")
    assert row is not None
    # a fresh budget; its attempt numbers continue after the earlier one
    assert (row.state, row.attempts, row.retried_at_attempt, row.dead_reason) == (
        "pending",
        1,
        1,
        None,
    )
    assert cli("dlq", "retry").returncode == 2  # nothing named and no --all


def test_dlq_purge_needs_confirmation(cli: Cli, ledger: Ledger) -> None:
    """Without --yes, a refused or unanswered question deletes nothing."""
    assert cli("dlq", "purge", "--older-than", "30d", "--dry-run").stdout.startswith(
        "1 dead letter(s) would be deleted"
    )
    refused = cli("dlq", "purge", "--older-than", "30d", stdin="n\n")
    assert refused.returncode == 1
    assert "nothing deleted" in refused.stderr
    unanswered = cli("dlq", "purge", "--older-than", "30d", stdin="")
    assert unanswered.returncode == 1
    assert ledger.counts_by_state() == {"dead": 5}
    confirmed = cli("dlq", "purge", "--older-than", "30d", stdin="y\n")
    assert confirmed.returncode == 0
    assert "deleted 1 dead letter(s)" in confirmed.stdout
    assert cli("dlq", "purge", "--reason", "malformed", "--yes").returncode == 0
    assert ledger.counts_by_state() == {"dead": 3}
    assert ledger.get("cashback:CB-OLD") is None


def test_dlq_export_writes_json_lines(cli: Cli, ledger: Ledger, tmp_path: Path) -> None:
    """Export: one JSON object per dead letter, the event included."""
    target = tmp_path / "dead.jsonl"
    assert cli("dlq", "export", "--kind", "cashback", "-o", str(target)).returncode == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert {row["event_id"] for row in rows} == {"cashback:CB-1", "cashback:CB-OLD"}
    assert all(row["event"]["amount"] == "5" for row in rows)


def test_events_timeline(cli: Cli, ledger: Ledger) -> None:
    """An order's events with their attempts and Gameball's answers."""
    timeline = cli("events", "A", "--json")
    assert timeline.returncode == 0
    events = json.loads(timeline.stdout)
    assert [e["event_id"] for e in events] == ["paid:A", "refunded:A:A-R1"]
    assert events[0]["attempts"][0]["code"] == 304
    assert events[1]["dead_reason"] == "blocked"
    table = cli("events", "A")
    assert "code 304" in table.stdout
    assert cli("events", "NOPE").returncode == 1


def test_publish_validates_field_by_field(cli: Cli, redis_url: str, tmp_path: Path) -> None:
    """Good events are published; bad ones refused with the field named; exit 1."""
    good = {
        "kind": "cashback",
        "transaction_id": "T-1",
        "customer_id": "c",
        "amount": "3",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    lines = [
        json.dumps(good),
        json.dumps({**good, "transaction_id": "T-2"}),
        json.dumps({**good, "transaction_id": "T-3", "amount": "-1"}),
        "{oops",
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = cli("publish", str(source))
    assert result.returncode == 1
    assert "accepted 2 (2 queued), refused 2" in result.stdout
    assert (
        f"refused {source} line 3: invalid cashback event: amount: must be greater than 0"
        in result.stderr
    )
    assert f"refused {source} line 4: not JSON" in result.stderr
    assert redis.Redis.from_url(redis_url).hlen(INBOX_KEY) == 2
    single = cli("publish", "-", stdin=json.dumps({**good, "transaction_id": "T-9"}))
    assert (single.returncode, single.stdout.strip()) == (0, "accepted 1 (1 queued), refused 0")
    assert cli("publish", str(tmp_path / "missing.json")).returncode == 2


def test_publish_says_when_no_worker_reads_its_redis(
    cli: Cli, redis_url: str, tmp_path: Path
) -> None:
    """Queued where no worker beats (another folder's GBQ_HOME, a wrong URL): a warning
    saying so; with a worker's heartbeat there, none."""
    event = {
        "kind": "cashback",
        "transaction_id": "NOBODY-1",
        "customer_id": "c",
        "amount": "3",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    alone = cli("publish", "-", stdin=json.dumps(event))
    assert alone.returncode == 0, alone.stderr
    assert "warning: no gbq worker is running against redis://127.0.0.1:" in alone.stderr
    redis.Redis.from_url(redis_url).set(ALIVE_PREFIX + "host:1:abc", b"1", px=60_000)
    read = cli("publish", "-", stdin=json.dumps({**event, "transaction_id": "NOBODY-2"}))
    assert read.returncode == 0, read.stderr
    assert "no gbq worker" not in read.stderr


def test_publish_refuses_any_bytes_line_by_line_without_a_traceback(
    cli: Cli, redis_url: str, tmp_path: Path
) -> None:
    """Binary, UTF-16, a Latin-1 line, a huge line: each refused with the file, the line
    and why; exit 1; the good lines of a file still go out (every class of bad bytes:
    tests/unit/test_eventfile.py)."""
    good = {
        "kind": "cashback",
        "customer_id": "c",
        "amount": "3",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    line = json.dumps({**good, "transaction_id": "MIXED-1"}).encode()
    files = {
        "utf16.json": (json.dumps(good).encode("utf-16"), "is UTF-16"),
        "binary.bin": (bytes(range(256)) * 4, "line 1: binary data"),
        "huge.jsonl": (line + b"\n" + b"[" * 3_000_000, "line 2: 3000000 bytes"),
        "mixed.jsonl": (
            line + b'\n{"customer_id": "Andr\xe9"}\n' + line.replace(b"-1", b"-2"),
            "line 2: not UTF-8",
        ),
    }
    for name, (data, why) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = cli("publish", str(path))
        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
        shown = f"refused {path}{' ' if why.startswith('line') else ': '}{why}"
        assert shown in result.stderr, (
            name,
            result.stderr[:500],
        )
    # the good lines of the mixed and the huge files
    assert redis.Redis.from_url(redis_url).hlen(INBOX_KEY) == 2
    piped = subprocess.run(
        [*GBQ, "publish", "-"], env=cli.env, input=b"\xff\xfe\x00", capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert piped.returncode == 1
    assert b"refused standard input: is UTF-16" in piped.stderr


def test_unreachable_services_are_one_line_errors_without_secrets(cli: Cli, tmp_path: Path) -> None:
    """Exit 3, one line, no traceback, no password."""
    cli.env["GBQ_REDIS_URL"] = f"redis://:{SECRET_KEY}@127.0.0.1:{free_port()}/0"
    redis_down = cli("status")
    assert redis_down.returncode == 3
    assert redis_down.stderr.startswith("error: cannot reach Redis at redis://:***@")
    cli.env["GBQ_DATABASE_URL"] = f"postgresql://gbq:{SECRET_KEY}@127.0.0.1:{free_port()}/x"
    for command in (["status"], ["dlq", "list"], ["events", "A"]):
        result = cli(*command)
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "cannot use the database at postgresql+psycopg://gbq:***@" in result.stderr
    cli.env["GBQ_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.db'}"
    unmigrated = cli("dlq", "list")
    assert unmigrated.returncode == 3
    assert "run `gbq migrate`" in unmigrated.stderr


def test_retrying_a_dead_paid_event_delivers_it_then_its_refunds_in_order(
    make_stack: type[Stack], sandbox: SandboxProcess, sqlite_url: str
) -> None:
    """Paid dies (outage past its window), its refunds are blocked; retry → all in order."""
    stack = make_stack(
        sqlite_url,
        GBQ_RETRY_WINDOW_S="1",
        GBQ_BREAKER_CONSECUTIVE_FAILURES="999",
        GBQ_BREAKER_MIN_REQUESTS="999",
    )
    paid = OrderPaid(
        order_id="Z",
        customer_id="cz",
        occurred_at=T0,
        total_price=Decimal(50),
        total_paid=Decimal(50),
    )
    refunds = [
        OrderRefunded(
            order_id="Z",
            refund_id=f"Z-R{n}",
            customer_id="cz",
            occurred_at=T0 + timedelta(minutes=n),
            amount=Decimal(n),
        )
        for n in (1, 2)
    ]
    sandbox.faults(outage=True)
    stack.start_worker(concurrency=2)
    stack.start_scheduler()
    stack.publisher.publish_many([paid, *refunds])
    stack.wait_settled(3, timeout_s=60)
    assert [
        stack.event(e).dead_reason for e in ("paid:Z", "refunded:Z:Z-R1", "refunded:Z:Z-R2")
    ] == ["expired", "blocked", "blocked"]
    sandbox.faults(outage=False)
    retried = subprocess.run(
        [*GBQ, "dlq", "retry", "paid:Z"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert retried.returncode == 0, retried.stderr
    assert "retried 1 dead letter(s), released 2 blocked event(s)" in retried.stdout
    assert stack.wait_settled(3, timeout_s=60) == {"delivered": 3}
    applied = [t["transaction_id"] for t in sandbox.state()["transactions"]]
    assert applied == ["Z", "Z-R1", "Z-R2"]
    assert sandbox.balance("cz") == 47


def test_parked_redemptions_are_listed_counted_and_resolved(cli: Cli, ledger: Ledger) -> None:
    """A redemption gbq could not carry (worker.rules.redemption) shows in `gbq redemptions
    list` and in `gbq status`; `resolve` records what the operator did; then none."""
    Redemptions(ledger).park(
        ParkedRedemption(
            event_id="paid:A",
            order_id="A",
            customer_id="c",
            hold_reference="hold-9",
            amount=None,
            reason="hold_expired",
            detail="the hold is gone and the value of its points unknown",
            parked_at=NOW,
        )
    )
    listed = cli("redemptions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["order_id"], row["reason"], row["hold_reference"]) == (
        "A",
        "hold_expired",
        "hold-9",
    )
    assert "redeemed points parked for you to settle: 1" in cli("status").stdout
    resolved = cli("redemptions", "resolve", "A", "--note", "deducted 40 points by hand")
    assert resolved.returncode == 0, resolved.stderr
    assert cli("redemptions", "list").returncode == 1
    assert cli("redemptions", "resolve", "A").returncode == 1
    [done] = Redemptions(ledger).listed(include_resolved=True)
    assert done.resolution == "deducted 40 points by hand"
