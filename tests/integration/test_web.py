"""``gbq web`` over real HTTP: what it refuses (beyond loopback without a password, wrong
passwords, unknown hosts, actions without the session's CSRF token or from another site,
bad filters), what it never shows (secrets, unescaped input), and that its pages and
actions match the ledger: paging through every dead letter once, the bulk retry's
confirmation, replace by the CLI's rule."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from harness.processes import GBQ, SandboxProcess
from harness.services import RedisServer
from harness.stack import Stack
from producers.quarantine import Poison
from tests.console import ConsoleProcess, bury, paid

pytestmark = pytest.mark.integration
CSRF = re.compile(r'name="csrf-token" content="([0-9a-f]{64})"')
OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def session(console: ConsoleProcess, **kwargs: object) -> tuple[httpx.Client, str]:
    """A browser-like client with its session cookie and that session's CSRF token."""
    client = httpx.Client(base_url=console.url, timeout=10, **kwargs)  # type: ignore[arg-type]
    OPEN.append(client)
    page = client.get("/dlq")
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match, "no CSRF token on the page"
    return client, match.group(1)


@pytest.fixture
def stack(make_stack: type[Stack], sqlite_url: str) -> Stack:
    return make_stack(sqlite_url)


def test_beyond_loopback_it_refuses_to_start_without_a_password(stack: Stack) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "::"):  # noqa: S104 - refused is the point
        done = subprocess.run(
            [*GBQ, "web", "--host", host, "--port", "0"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "without GBQ_WEB_PASSWORD" in done.stderr


def test_a_password_is_required_and_compared_whole(stack: Stack) -> None:
    console = ConsoleProcess(stack, GBQ_WEB_PASSWORD="s3cret-Pass")
    for auth in (None, ("gbq", "wrong"), ("gbq", "s3cret-Pas"), ("gbq", "s3cret-Pass2")):
        response = httpx.get(console.url + "/", auth=auth, timeout=10)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    garbage = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
    assert httpx.get(console.url + "/", headers=garbage, timeout=10).status_code == 401
    page = httpx.get(console.url + "/", auth=("anyone", "s3cret-Pass"), timeout=10)
    assert page.status_code == 200
    assert "s3cret-Pass" not in page.text


def test_an_unknown_host_name_is_refused(stack: Stack) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: no answer for it."""
    console = ConsoleProcess(stack)
    response = httpx.get(console.url + "/", headers={"Host": "evil.example"}, timeout=10)
    assert response.status_code == 400
    allowed = ConsoleProcess(stack, "web2", GBQ_WEB_ALLOWED_HOSTS="gbq.internal")
    response = httpx.get(allowed.url + "/", headers={"Host": "gbq.internal:80"}, timeout=10)
    assert response.status_code == 200


def test_actions_need_the_sessions_csrf_token_and_the_same_origin(stack: Stack) -> None:
    bury(stack, [paid("CSRF-1")])
    console = ConsoleProcess(stack)
    client, token = session(console)
    other, other_token = session(console)
    retry = "/events/paid:CSRF-1/do/retry"
    refused = [
        client.post(retry, data={}),  # no token
        client.post(retry, data={"csrf": "0" * 64}),  # a forged one
        client.post(retry, data={"csrf": other_token}),  # another session's
        httpx.post(console.url + retry, data={"csrf": token}),  # no session cookie
        client.post(retry, data={"csrf": token}, headers={"Origin": "https://evil.example"}),
        client.post(retry, data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}),
        client.post("/dlq/bulk", data={"action": "purge", "count": "1"}),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    assert stack.event("paid:CSRF-1").state == "dead"
    other.close()
    done = client.post(
        retry,
        data={"csrf": token},
        headers={"Origin": console.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert done.status_code == 303
    assert stack.event("paid:CSRF-1").state == "pending"  # requeued; no worker runs here
    assert "retried 1 dead letter" in client.get(done.headers["location"]).text


def test_hostile_content_is_shown_escaped_and_no_secret_is_shown(
    stack: Stack, sandbox: SandboxProcess
) -> None:
    """Markup in Gameball's message, in ids and in a poison message's raw bytes is text
    on every page; the API key, the secret key and the database password never appear."""
    script = "<script>alert(1)</script>"
    bury(stack, [paid("X<b>1</b>", customer="c<i>")], message=script + '"><img src=x>')
    poison = b'{"event_id": "' + script.encode() + b'", \xff\x00 \x1b[31m'
    malformed = stack.ledger.dead_letter_poison(
        Poison.of("queue gbq", script, poison), datetime.now(UTC)
    )
    console = ConsoleProcess(stack)
    client, _ = session(console)
    pages = [
        client.get("/"),
        client.get("/dlq"),
        client.get("/events/paid:X<b>1</b>"),
        client.get("/orders/X<b>1</b>"),
        client.get("/search", params={"q": "c<i>"}),
        client.get("/search", params={"q": script}),
        client.get("/dlq", params={"code": script}),
        client.get(f"/events/{malformed}"),
        client.get("/dlq", params={"reason": "malformed"}),
    ]
    secrets = [
        stack.settings.gameball_api_key.get_secret_value(),
        stack.settings.gameball_secret_key.get_secret_value(),
    ]
    for response in pages:
        assert "<script>" not in response.text
        assert "<img src=x>" not in response.text
        assert "<b>1</b>" not in response.text
        for secret in secrets:
            assert secret not in response.text
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2].text
    assert pages[7].status_code == 200
    assert "\\xff\\x00" in pages[7].text  # the raw bytes, escaped
    assert "\x1b" not in pages[7].text
    assert "\x00" not in pages[7].text


BIDI = "\u202e\u2066\u2067\u2068\u2069\u202a"


def test_bidi_controls_are_escaped_wherever_event_content_shows(stack: Stack) -> None:
    """Right-to-left overrides and isolates in an event's free text (extra values, an
    e-mail, discount codes) and in a Gameball message show as ``\u202e``, never raw, on
    every page and in the replace form, which still holds the same JSON."""
    event = paid("BIDI-1").model_copy(
        update={"extra": {"note": f"pay{BIDI}ed"}, "email": f"a{BIDI}@shop.example"}
    )
    bury(stack, [event], message=f"refused {BIDI} here")
    console = ConsoleProcess(stack)
    client, _ = session(console)
    pages = [
        client.get("/"),
        client.get("/dlq"),
        client.get("/events/paid:BIDI-1"),
        client.get("/orders/BIDI-1"),
        client.get("/search", params={"q": f"c-web{BIDI}"}),
        client.get("/dlq", params={"code": BIDI, "order": BIDI}),
        client.get("/dlq/confirm", params={"action": "purge", "order": BIDI}),
    ]
    for response in pages:
        assert response.status_code in (200, 400), response.text
        for char in BIDI:
            assert char not in response.text, (response.url, hex(ord(char)))
    page = pages[2].text
    assert "pay\\u202e\\u2066" in page
    form = re.search(r'<textarea name="event"[^>]*>(.*?)</textarea>', page, flags=re.DOTALL)
    assert form is not None
    shown = html.unescape(form.group(1))
    assert json.loads(shown)["extra"]["note"] == f"pay{BIDI}ed"  # the same JSON value


def test_notes_and_searches_never_show_a_links_text_as_the_consoles(stack: Stack) -> None:
    """``/?note=`` from a link is not shown; a note the console wrote after an action is;
    a search repeats nothing of what was searched for in its sentences."""
    bury(stack, [paid("NOTE-1")])
    console = ConsoleProcess(stack)
    client, token = session(console)
    forged = "Your session expired: log in at evil.example"
    for path in ("/", "/dlq", "/events/paid:NOTE-1"):
        assert forged not in client.get(path, params={"note": forged}).text
        assert forged not in client.get(path, params={"note": forged, "note_sig": "0" * 64}).text
    done = client.post("/events/paid:NOTE-1/do/retry", data={"csrf": token})
    assert "retried 1" in client.get(done.headers["location"]).text
    searched = client.get("/search", params={"q": forged}).text
    assert searched.count("evil.example") == 1  # only in the search box, as typed
    assert 'value="Your session expired: log in at evil.example"' in searched


def test_with_redis_down_the_overview_shows_the_ledger_and_says_why(
    make_stack: type[Stack], sqlite_url: str, tmp_path: Path
) -> None:
    """Redis stopped under a running console: the overview answers 200 with the ledger's
    counts and a line saying why the rest is missing; a retry says it cannot be sent."""
    server = RedisServer(tmp_path / "redis").start()
    stack = make_stack(sqlite_url, redis=server.url)
    bury(stack, [paid("DOWN-1"), paid("DOWN-2")])
    console = ConsoleProcess(stack)
    client, token = session(console)
    assert client.get("/").status_code == 200
    server.stop()
    try:
        page = client.get("/")
        assert page.status_code == 200, page.text[-2000:]
        assert "Redis does not answer" in page.text
        assert re.search(r'data-state="dead">dead<b>2</b>', page.text)
        assert client.get("/dlq").status_code == 200
        retried = client.post("/events/paid:DOWN-1/do/retry", data={"csrf": token})
        shown = client.get(retried.headers["location"])
        assert shown.status_code == 200
        assert "Redis failed" in shown.text
    finally:
        server.kill()


def test_paging_visits_every_dead_letter_once_newest_first(stack: Stack) -> None:
    events = [paid(f"PAGE-{number:03}") for number in range(130)]
    bury(stack, events)
    console = ConsoleProcess(stack)
    client, _ = session(console)
    seen: list[str] = []
    url: str | None = "/dlq"
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        assert "130 dead letter(s) match" in page.text
        seen += re.findall(r'<a href="/events/[^"]+">(paid:PAGE-\d+)</a>', page.text)
        found = re.search(r'<a id="next" href="([^"]+)"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert pages == 3
    assert seen == [event.event_id for event in reversed(events)]


def test_bad_filters_are_refused_field_by_field(stack: Stack) -> None:
    console = ConsoleProcess(stack)
    client, _ = session(console)
    page = client.get("/dlq", params={"code": "abc", "since": "yesterday-ish"})
    assert page.status_code == 400
    assert "code: a Gameball error code is a whole number" in page.text
    assert "since:" in page.text


def test_a_bulk_retry_acts_only_on_the_count_confirmed(stack: Stack) -> None:
    """The confirmation names how many; if more died since, nothing happens and the new
    count is asked for; confirmed, exactly the filtered set is requeued."""
    bury(stack, [paid("BULK-1"), paid("BULK-2")], code=7)
    bury(stack, [paid("OTHER-1")], code=9)
    console = ConsoleProcess(stack)
    client, token = session(console)
    confirm = client.get("/dlq/confirm", params={"action": "retry", "code": "7"})
    assert "Retry 2 dead letter(s)?" in confirm.text
    bury(stack, [paid("BULK-3")], code=7)
    form = {"csrf": token, "action": "retry", "count": "2", "code": "7"}
    stale = client.post("/dlq/bulk", data=form)
    assert "changed (2 → 3)" in client.get(stale.headers["location"]).text
    assert {stack.event(f"paid:BULK-{n}").state for n in (1, 2, 3)} == {"dead"}
    done = client.post("/dlq/bulk", data={**form, "count": "3"})
    assert "retried 3 dead letter" in client.get(done.headers["location"]).text
    assert {stack.event(f"paid:BULK-{n}").state for n in (1, 2, 3)} == {"pending"}
    assert stack.event("paid:OTHER-1").state == "dead"


def test_replace_follows_the_clis_rule(stack: Stack) -> None:
    bury(stack, [paid("REP-1", 10)])
    console = ConsoleProcess(stack)
    client, token = session(console)
    replace = "/events/paid:REP-1/do/replace"

    def note(event: object) -> str:
        response = client.post(replace, data={"csrf": token, "event": json.dumps(event)})
        return client.get(response.headers["location"]).text

    corrected = json.loads(paid("REP-1", 12).model_dump_json())
    assert (
        "not replaced: not JSON"
        in client.get(
            client.post(replace, data={"csrf": token, "event": "{"}).headers["location"]
        ).text
    )
    assert "total_paid" in note({**corrected, "total_paid": "-1"})  # the field named
    assert "the corrected event&#39;s id is paid:REP-2" in note(
        json.loads(paid("REP-2", 12).model_dump_json())
    )
    assert stack.event("paid:REP-1").state == "dead"
    assert "replaced and retried 1" in note({"event_id": "paid:REP-1", "event": corrected})
    row = stack.event("paid:REP-1")
    assert row.state == "pending"
    assert json.loads(row.payload)["total_paid"] == "12"
    again = note(corrected)  # no longer a dead letter: only dead letters can be replaced
    assert "not replaced: paid:REP-1: already known (pending)" in again


def test_the_last_hour_is_counted_from_the_ledger(database_url: str) -> None:
    """10 events published 30 minutes ago, 6 delivered 20 minutes ago, 2 dead 10 minutes
    ago, 2 still pending: the chart's minutes say exactly that."""
    from sqlalchemy import bindparam, text  # noqa: PLC0415

    from tests.console import paid as order  # noqa: PLC0415
    from worker.ledger.core import new_event  # noqa: PLC0415
    from worker.ledger.engine import create_ledger_engine  # noqa: PLC0415
    from worker.ledger.models import UtcDateTime  # noqa: PLC0415
    from worker.ledger.reads import last_hour  # noqa: PLC0415
    from worker.ledger.repository import Ledger  # noqa: PLC0415

    now = datetime.now(UTC).replace(second=30, microsecond=0)
    ledger = Ledger(create_ledger_engine(database_url))
    events = [order(f"HOUR-{n}") for n in range(10)]
    ledger.ingest([new_event(event, None) for event in events], now)
    change = text(
        "UPDATE gbq_events SET created_at = :created, state = :state, delivered_at = :delivered, "
        "updated_at = :updated, dead_reason = :reason WHERE event_id = :id"
    ).bindparams(
        *(bindparam(name, type_=UtcDateTime()) for name in ("created", "delivered", "updated"))
    )
    minutes = [now - timedelta(minutes=m) for m in (30, 20, 10)]
    with ledger.engine.begin() as connection:
        for n, event in enumerate(events):
            state = "delivered" if n < 6 else "dead" if n < 8 else "pending"
            settled = (
                minutes[1]
                if state == "delivered"
                else minutes[2]
                if state == "dead"
                else minutes[0]
            )
            connection.execute(
                change,
                {
                    "id": event.event_id,
                    "created": minutes[0],
                    "state": state,
                    "delivered": minutes[1] if state == "delivered" else None,
                    "updated": settled,
                    "reason": "rejected" if state == "dead" else None,
                },
            )
    with ledger.engine.connect() as connection:
        hour = last_hour(connection, now, backlog_now=2)
    ledger.engine.dispose()
    assert sum(hour.delivered) == 6
    # Minute i ends 59 - i minutes before now; the backlog is the one at a minute's end.
    assert hour.delivered[39] == 6  # the minute ending 20 minutes ago
    assert hour.died[49] == 2
    assert set(hour.backlog[:29]) == {0}
    assert set(hour.backlog[29:39]) == {10}
    assert set(hour.backlog[39:49]) == {4}
    assert set(hour.backlog[49:]) == {2}
