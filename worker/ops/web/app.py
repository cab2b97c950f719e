"""The console's routes. Pages read through ``readings``; actions go through
``worker.ops.repair`` and ``DeadLetters`` exactly as ``gbq dlq`` does; every request passes
the rules of ``security`` first."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import redis
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from producers.events import InvalidEventError, parse_event
from producers.spool import Spool
from producers.untrusted import UnreadableError, load_json, printable
from worker.coordination.queue import RedisQueue
from worker.coordination.ratelimit import RateLimiter
from worker.ledger.deadletters import DeadFilter, DeadLetters
from worker.ops import repair
from worker.ops.eventfile import unwrapped
from worker.ops.web import readings, security
from worker.ops.web.chart import Series, line_chart
from worker.rules.timespec import TimeSpecError, parse_moment
from worker.settings import Settings, key_fingerprint

PAGE = 50
MAX_FORM_BYTES = 600_000  # a corrected event (512 KiB at most) and the form's fields
TEMPLATES = Path(__file__).with_name("templates")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FILTERS = ("order", "kind", "reason", "code", "since", "until")


@dataclass
class Console:
    """What the routes share: the ledger, Redis, and the process's CSRF key."""

    settings: Settings
    letters: DeadLetters
    client: redis.Redis
    limiter: RateLimiter
    spool: Spool
    csrf_key: bytes

    @property
    def queue(self) -> RedisQueue:
        return RedisQueue(self.client)


# Shown escaped, not obeyed: bidirectional overrides and isolates (U+202A-U+202E,
# U+2066-U+2069) and every other format, private-use, unassigned or separator character
# can make text read otherwise than it is. Escaped as JSON does (\u202e), so event JSON
# stays the same JSON in the replace form.
_INVISIBLE = frozenset({"Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def neutralised(value: Any) -> Any:
    """What a template shows of ``value``: text with invisible controls escaped; markup
    the console built itself (``| safe``) and other values as they are."""
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    if value.isascii():
        return value
    return "".join(_escaped(char) for char in value)


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in _INVISIBLE:
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON's escape of an astral character
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


class FilterError(ValueError):
    """A filter the page cannot use, named."""


def dead_filter(values: Any, event_ids: tuple[str, ...] = ()) -> DeadFilter:
    """The CLI's filters from query or form fields; refuses bad ones field by field."""
    now, errors = datetime.now(UTC), []
    code: int | None = None
    moments: dict[str, datetime | None] = {"since": None, "until": None}
    if values.get("code"):
        try:
            code = int(values["code"])
        except ValueError:
            errors.append("code: a Gameball error code is a whole number")
    for name in moments:
        if values.get(name):
            try:
                moments[name] = parse_moment(values[name], now)
            except TimeSpecError as error:
                errors.append(f"{name}: {error}")
    if errors:
        raise FilterError("; ".join(errors))
    return DeadFilter(
        event_ids,
        values.get("order") or None,
        values.get("kind") or None,
        values.get("reason") or None,
        code,
        moments["since"],
        moments["until"],
    )


def filter_query(values: Any) -> str:
    return urlencode({name: values[name] for name in FILTERS if values.get(name)})


def filters_shown(values: Any) -> dict[str, Any]:
    """The filters as a page shows them: each field's value, and as a query string."""
    return {
        "values": {name: values.get(name, "") for name in FILTERS},
        "query": filter_query(values),
    }


class Pages:
    """The routes' handlers, sharing the console and the page helpers."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.environment = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True),
            finalize=neutralised,  # every {{ … }}: no bidi or other invisible control
        )
        self.environment.filters["printable"] = lambda value, limit=200: printable(
            str(value), limit
        )
        self.environment.globals["fingerprint"] = key_fingerprint(console.settings.gameball_api_key)

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        note = request.query_params.get("note", "")
        signed = security.note_is_ours(
            self.console.csrf_key, note, request.query_params.get("note_sig")
        )
        html = self.environment.get_template(name).render(
            request=request,
            settings=self.console.settings,
            csrf=security.csrf_token(self.console.csrf_key, request.state.session),
            note=note if signed else "",  # never a link's words as the console's own
            **context,
        )
        return HTMLResponse(html, status_code)

    def back(self, path: str, note: str) -> RedirectResponse:
        """Back to ``path`` with a note of what was done, signed by this console."""
        separator = "&" if "?" in path else "?"
        signature = security.note_signature(self.console.csrf_key, note)
        query = urlencode({"note": note, "note_sig": signature})
        return RedirectResponse(f"{path}{separator}{query}", 303)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.overview),
            Route("/dlq", self.dead_letters),
            Route("/dlq/confirm", self.confirm),
            Route("/dlq/bulk", self.bulk, methods=["POST"]),
            Route("/events/{event_id:path}/do/{action}", self.event_action, methods=["POST"]),
            Route("/events/{event_id:path}", self.event),
            Route("/orders/{order_id:path}", self.order),
            Route("/search", self.search),
        ]

    async def overview(self, request: Request) -> Response:
        view = await run_in_threadpool(
            readings.overview,
            self.console.letters,
            self.console.client,
            self.console.limiter,
            self.console.spool,
            datetime.now(UTC),
        )
        chart = line_chart(
            [
                Series("delivered per minute", "#1a7f37", view.hour.delivered, bars=True),
                Series("backlog", "#9a6700", view.hour.backlog),
            ]
        )
        return self.page(request, "overview.html", view=view, chart=chart)

    async def dead_letters(self, request: Request) -> Response:
        values = request.query_params
        try:
            dead = dead_filter(values)
        except FilterError as error:
            return self.page(
                request, "dlq.html", 400, rows=[], total=0, error=str(error), values={}
            )
        after = None
        if values.get("after_at") and values.get("after_id"):
            try:
                after = (datetime.fromisoformat(values["after_at"]), values["after_id"])
            except ValueError:
                return self.page(
                    request, "dlq.html", 400, rows=[], total=0, values={}, error="bad page"
                )
        rows = await run_in_threadpool(self.console.letters.find, dead, PAGE + 1, after)
        total = await run_in_threadpool(self.console.letters.count, dead)
        more = rows[PAGE] if len(rows) > PAGE else None
        rows = rows[:PAGE]
        next_page = None
        if more is not None:
            last = rows[-1]
            next_page = (
                filter_query(values)
                + "&"
                + urlencode({"after_at": last.updated_at.isoformat(), "after_id": last.event_id})
            )
        return self.page(
            request,
            "dlq.html",
            rows=rows,
            total=total,
            next_page=next_page,
            **filters_shown(values),
            error=None,
        )

    async def confirm(self, request: Request) -> Response:
        values = request.query_params
        action = values.get("action", "")
        if action not in ("retry", "purge"):
            return PlainTextResponse("unknown action", 400)
        try:
            dead = dead_filter(values)
        except FilterError as error:
            return self.back("/dlq", str(error))
        count = await run_in_threadpool(self.console.letters.count, dead)
        return self.page(
            request,
            "confirm.html",
            action=action,
            count=count,
            **filters_shown(values),
        )

    async def bulk(self, request: Request) -> Response:
        form: FormData = request.state.form
        action = str(form.get("action", ""))
        if action not in ("retry", "purge"):
            return PlainTextResponse("unknown action", 400)
        try:
            dead = dead_filter(form)
        except FilterError as error:
            return self.back("/dlq", str(error))
        count = await run_in_threadpool(self.console.letters.count, dead)
        if str(count) != form.get("count"):
            # The set changed since the operator saw its size: show the new one.
            return self.back(
                f"/dlq/confirm?action={action}&{filter_query(form)}",
                f"the matching dead letters changed ({form.get('count')} → {count}): confirm again",
            )
        if action == "purge":
            deleted = await run_in_threadpool(self.console.letters.purge, dead)
            return self.back("/dlq", f"deleted {deleted} dead letter(s)")
        chosen = await run_in_threadpool(self.console.letters.ids, dead)
        done = await run_in_threadpool(
            repair.retry, self.console.letters, self.console.queue, chosen
        )
        return self.back("/dlq", done.summary())

    async def event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        view = await run_in_threadpool(readings.event_view, self.console.letters, event_id)
        if view is None:
            return self.page(request, "missing.html", 404, what=f"event {event_id}")
        return self.page(request, "event.html", view=view)

    async def event_action(self, request: Request) -> Response:
        event_id, action = request.path_params["event_id"], request.path_params["action"]
        here = f"/events/{quote(event_id, safe='')}"
        form: FormData = request.state.form
        if action == "retry":
            done = await run_in_threadpool(
                repair.retry, self.console.letters, self.console.queue, [event_id]
            )
            return self.back(here, done.summary())
        if action == "purge":
            if form.get("confirm") != event_id:
                return self.back(here, "not purged: type the event id to confirm")
            deleted = await run_in_threadpool(
                self.console.letters.purge, DeadFilter(event_ids=(event_id,))
            )
            return self.back("/dlq", f"deleted {deleted} dead letter(s)")
        if action == "replace":
            try:
                data = unwrapped(load_json(str(form.get("event", ""))))
                corrected = parse_event(data)
            except UnreadableError as error:
                return self.back(here, f"not replaced: not JSON ({error})")
            except InvalidEventError as error:
                return self.back(here, f"not replaced: {error}")
            if corrected.event_id != event_id:
                return self.back(
                    here, f"not replaced: the corrected event's id is {corrected.event_id}"
                )
            done = await run_in_threadpool(
                repair.replace, self.console.letters, self.console.queue, [corrected]
            )
            why = "; ".join(f"{skipped}: {reason}" for skipped, reason in done.skipped)
            if not done.retried:
                return self.back(here, f"not replaced: {why}")
            return self.back(here, f"replaced and {done.summary()}" + (f" ({why})" if why else ""))
        return PlainTextResponse("unknown action", 404)

    async def order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        timeline = await run_in_threadpool(self.console.letters.timeline, order_id)
        if not timeline:
            return self.page(request, "missing.html", 404, what=f"order {order_id}")
        return self.page(request, "order.html", order_id=order_id, timeline=timeline)

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            return self.page(request, "search.html", query="", rows=[])
        ledger = self.console.letters.ledger
        if await run_in_threadpool(ledger.get, query) is not None:
            return RedirectResponse(f"/events/{quote(query, safe='')}", 303)
        if await run_in_threadpool(ledger.has_order, query):
            return RedirectResponse(f"/orders/{quote(query, safe='')}", 303)
        rows = await run_in_threadpool(readings.customer_events, self.console.letters, query)
        return self.page(request, "search.html", query=query, rows=rows)


def build(console: Console) -> Starlette:
    return Starlette(
        routes=Pages(console).routes(),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard(console))],
    )


Dispatch = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def guard(console: Console) -> Dispatch:
    """Host, then password, then (for actions) same origin and the CSRF token."""
    settings = console.settings
    password = settings.web_password.get_secret_value() if settings.web_password else None
    extra = [name.strip() for name in settings.web_allowed_hosts.split(",") if name.strip()]

    async def dispatch(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.headers.get("host")
        if not security.host_allowed(host, settings.web_host, extra):
            return PlainTextResponse("unknown host (see GBQ_WEB_ALLOWED_HOSTS)", 400)
        if password and not security.password_matches(
            request.headers.get("authorization"), password
        ):
            return PlainTextResponse(
                "password required", 401, {"WWW-Authenticate": 'Basic realm="gbq"'}
            )
        session = request.cookies.get(security.SESSION_COOKIE)
        fresh = session is None or len(session) > 64
        request.state.session = security.new_session() if fresh else session
        if request.method == "POST":
            refused = await _refused(request, console.csrf_key, host or "")
            if refused:
                return PlainTextResponse(refused, 403)
        response = await call_next(request)
        response.headers.update(HEADERS)
        if fresh:
            response.set_cookie(
                security.SESSION_COOKIE,
                request.state.session,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    return dispatch


async def _refused(request: Request, key: bytes, host: str) -> str | None:
    """Why an action is refused, or None."""
    headers = request.headers
    if not security.same_origin(headers.get("origin"), headers.get("sec-fetch-site"), host):
        return "refused: the request comes from another site"
    if int(headers.get("content-length") or 0) > MAX_FORM_BYTES:
        return "refused: the form is too large"
    form = await request.form(max_files=0, max_fields=50, max_part_size=MAX_FORM_BYTES)
    request.state.form = form
    token = form.get("csrf")
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if not security.csrf_valid(key, cookie, token if isinstance(token, str) else None):
        return "refused: missing or stale CSRF token (reload the page and try again)"
    return None


def create_console(settings: Settings, letters: DeadLetters, client: redis.Redis) -> Starlette:
    from worker.coordination.ratelimit import RateLimits  # noqa: PLC0415 - keeps the import list short

    console = Console(
        settings,
        letters,
        client,
        RateLimiter(client, RateLimits.from_settings(settings)),
        Spool(settings.effective_spool_path),
        secrets.token_bytes(32),
    )
    return build(console)
