"""Prometheus metrics, served by ``gbq scheduler`` on ``GBQ_METRICS_HOST:GBQ_METRICS_PORT``.

The choice: metrics are aggregated through the ledger and Redis rather than collected in
each worker process (no multiprocess directory, one scrape target, cluster-wide figures by
construction). Counts come from the ledger at scrape time; the latency histogram is fed
from deliveries newer than the last scrape, then served in the same scrape (current at
each one); the breaker, the queue and the limiter come from Redis, where workers also
count rate-limit waits and breaker deferrals.

    gbq_events{kind, state, reason}              events in the ledger (published = all)
    gbq_attempts_total{outcome, reason}          HTTP attempts (ever: retention keeps it)
    gbq_delivery_latency_seconds                 publish → Gameball acceptance (histogram)
    gbq_oldest_sendable_age_seconds              age of the oldest event that can go now
                                                 (pending, in flight or retrying): alert here
    gbq_oldest_waiting_age_seconds               age of the oldest event waiting for an
                                                 earlier one of its order (normal: up to
                                                 GBQ_WAITING_WINDOW_S)
    gbq_queue_depth / gbq_inbox_depth            messages waiting in Redis
    gbq_inbox_kept                               inbox entries the ledger has, kept until
                                                 its standbys have them too
                                                 (GBQ_LEDGER_STANDBYS)
    gbq_ledger_standbys_seen / _required         streaming standbys whose position the
                                                 ledger's primary shows, and how many must
                                                 confirm (GBQ_LEDGER_STANDBYS): alert when
                                                 seen stays below (the inbox keeps all)
    gbq_breaker_state{state}                     1 for the current state
    gbq_rate_limit_waits_total                   times a worker waited for a token
    gbq_breaker_deferrals_total                  events held back by the breaker
    gbq_spooled_events{host, path}               events in a host's spool, waiting for
                                                 Redis (as its relayer last reported)
    gbq_spool_oldest_age_seconds{host, path}     age of that spool's oldest event: alert
                                                 when it grows (the spool is not draining)
    gbq_parked_redemptions                       redeemed points the operator settles by
                                                 hand (gbq redemptions list): alert above 0
    gbq_workers_alive                            worker processes whose heartbeat is current
    gbq_schedulers_alive / gbq_scheduler_leader  schedulers whose loop turns; 1 if one leads
    gbq_scheduler_last_tick_age_seconds          since the leader last finished a tick
    gbq_ledger_up / gbq_redis_up                 1 if this scrape could read it, else 0 (the
                                                 figures from it are then left out)

deploy/prometheus/alerts.yml alerts on these; docs/operations.md explains each alert.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from producers.keys import (
    BREAKER_DEFERRALS_KEY,
    BREAKER_KEY,
    INBOX_KEPT_KEY,
    INBOX_KEY,
    QUEUE,
    RATE_LIMIT_WAITS_KEY,
)
from producers.spool_report import SpoolReport
from producers.spool_report import reports as spool_reports
from producers.untrusted import printable
from worker.coordination.liveness import alive
from worker.coordination.scheduler_liveness import last_tick_age_s, leader_present, schedulers
from worker.ledger.counters import attempt_counts, event_counts
from worker.ledger.reads import delivery_times_after
from worker.ledger.repository import Ledger
from worker.ledger.standbys import standby_positions
from worker.ledger.status_reads import oldest_created, unresolved_redemptions
from worker.rules.breaker import Breaker, State
from worker.rules.states import SENDABLE, EventState
from worker.rules.timespec import age_s

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    6 * 3600,
    24 * 3600,
    72 * 3600,
)


class LedgerCollector(Collector):
    """Reads the figures at scrape time."""

    def __init__(
        self,
        ledger: Ledger,
        client: redis.Redis,
        registry: CollectorRegistry,
        *,
        standbys_required: int = 0,
    ) -> None:
        self.ledger, self.client = ledger, client
        self.standbys_required = standbys_required
        # Not registered: collect() feeds it, then yields it, so a scrape never shows the
        # histogram as it was before that scrape's deliveries.
        self.latency = Histogram(
            "gbq_delivery_latency_seconds",
            "From publish to Gameball's acceptance.",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._watermark = datetime.now(UTC)
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        # Each source on its own: with the ledger down, Redis's figures still come (and
        # the other way round), and gbq_ledger_up / gbq_redis_up say which is missing.
        try:
            ledger_figures = list(self._ledger_figures())
        except (SQLAlchemyError, OSError):
            log.warning("metrics: the ledger cannot be read", exc_info=True)
            ledger_figures = []
        yield GaugeMetricFamily(
            "gbq_ledger_up", "1 if this scrape read the ledger.", value=1 if ledger_figures else 0
        )
        yield from ledger_figures
        try:
            redis_figures = list(self._redis_figures())
        except (redis.RedisError, OSError):
            log.warning("metrics: Redis cannot be read", exc_info=True)
            redis_figures = []
        yield GaugeMetricFamily(
            "gbq_redis_up", "1 if this scrape read Redis.", value=1 if redis_figures else 0
        )
        yield from redis_figures

    def _ledger_figures(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        with self.ledger.engine.connect() as connection:
            events = event_counts(connection)  # kept by triggers: a few rows read
            attempts = attempt_counts(connection)
            oldest = {
                name: connection.execute(oldest_created(states)).scalar()
                for name, states in (("sendable", SENDABLE), ("waiting", (EventState.WAITING,)))
            }
            parked = unresolved_redemptions(connection)
            with self._lock:
                for delivered_at, published_at in delivery_times_after(connection, self._watermark):
                    if published_at is not None:
                        self.latency.observe(
                            max(0.0, (delivered_at - published_at).total_seconds())
                        )
                    self._watermark = max(self._watermark, delivered_at)
            standbys = _standbys_seen(connection)  # last: a failure ends the transaction
        by_kind = GaugeMetricFamily(
            "gbq_events", "Events in the ledger.", labels=["kind", "state", "reason"]
        )
        for (kind, state, reason), count in events.items():
            by_kind.add_metric([kind, state, reason or ""], count)
        yield by_kind
        by_outcome = CounterMetricFamily(
            "gbq_attempts", "HTTP attempts to Gameball.", labels=["outcome", "reason"]
        )
        for (outcome, reason), count in attempts.items():
            by_outcome.add_metric([outcome, reason], count)
        yield by_outcome
        yield GaugeMetricFamily(
            "gbq_oldest_sendable_age_seconds",
            "Age of the oldest event that can be sent now (pending, in flight, retrying).",
            value=age_s(oldest["sendable"], now),
        )
        yield GaugeMetricFamily(
            "gbq_oldest_waiting_age_seconds",
            "Age of the oldest event waiting for an earlier event of its order.",
            value=age_s(oldest["waiting"], now),
        )
        yield GaugeMetricFamily(
            "gbq_parked_redemptions",
            "Redeemed points parked for the operator (gbq redemptions list).",
            value=parked,
        )
        yield from self.latency.collect()
        if standbys is not None:
            yield GaugeMetricFamily(
                "gbq_ledger_standbys_seen",
                "Streaming ledger standbys whose flushed position the primary shows.",
                value=standbys,
            )
        yield GaugeMetricFamily(
            "gbq_ledger_standbys_required",
            "GBQ_LEDGER_STANDBYS: standbys that must have a commit before the inbox forgets.",
            value=self.standbys_required,
        )

    def _redis_figures(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen(INBOX_KEY)
        pipe.zcard(INBOX_KEPT_KEY)
        pipe.get(BREAKER_KEY)
        pipe.get(RATE_LIMIT_WAITS_KEY)
        pipe.get(BREAKER_DEFERRALS_KEY)
        queue, inbox, kept, breaker_raw, waits, deferrals = pipe.execute()
        yield GaugeMetricFamily("gbq_queue_depth", "Delivery messages queued.", value=queue)
        yield GaugeMetricFamily(
            "gbq_inbox_depth", "Published, not yet ingested.", value=max(0, inbox - kept)
        )
        yield GaugeMetricFamily(
            "gbq_inbox_kept",
            "Inbox entries the ledger has, kept until its standbys have them too.",
            value=kept,
        )
        current = Breaker.from_json(breaker_raw).state
        states = GaugeMetricFamily(
            "gbq_breaker_state", "1 for the breaker's state.", labels=["state"]
        )
        for state in State:
            states.add_metric([state.value], 1.0 if state is current else 0.0)
        yield states
        yield CounterMetricFamily(
            "gbq_rate_limit_waits", "Waits for a rate-limit token.", value=int(waits or 0)
        )
        yield CounterMetricFamily(
            "gbq_breaker_deferrals",
            "Events held back by the open breaker.",
            value=int(deferrals or 0),
        )
        yield from _spool_figures(spool_reports(self.client), time.time())
        yield GaugeMetricFamily(
            "gbq_workers_alive",
            "Worker processes whose heartbeat is current.",
            value=len(alive(self.client)),
        )
        seen = schedulers(self.client)
        yield GaugeMetricFamily(
            "gbq_schedulers_alive", "Schedulers whose loop turns.", value=len(seen)
        )
        yield GaugeMetricFamily(
            "gbq_scheduler_leader",
            "1 if a scheduler holds the lead.",
            value=1 if leader_present(self.client) else 0,
        )
        ticked = last_tick_age_s(self.client)
        if ticked is not None:  # never ticked: no sample, rather than a made-up age
            yield GaugeMetricFamily(
                "gbq_scheduler_last_tick_age_seconds",
                "Seconds since the leading scheduler last finished a tick (Redis's clock).",
                value=ticked,
            )


def _standbys_seen(connection: Connection) -> int | None:
    """Streaming standbys whose flushed position the ledger's primary shows (None: it
    cannot say, as a server in recovery, which has no WAL position of its own)."""
    try:
        positions = standby_positions(connection)
    except SQLAlchemyError:
        log.debug("metrics: the ledger's standbys cannot be read", exc_info=True)
        return None
    return sum(position is not None for position in positions.flushed)


def _spool_figures(reports: list[SpoolReport], now: float) -> Iterator[GaugeMetricFamily]:
    spooled = GaugeMetricFamily(
        "gbq_spooled_events",
        "Events in a host's spool, waiting for Redis (as its relayer last reported).",
        labels=["host", "path"],
    )
    oldest = GaugeMetricFamily(
        "gbq_spool_oldest_age_seconds",
        "Age of the oldest event in a host's spool.",
        labels=["host", "path"],
    )
    for found in reports:
        labels = [printable(found.host, 100), printable(found.path, 200)]
        spooled.add_metric(labels, found.count)
        oldest.add_metric(labels, found.oldest_age_s(now) or 0.0)
    yield spooled
    yield oldest


def serve_metrics(
    ledger: Ledger, client: redis.Redis, host: str, port: int, *, standbys_required: int = 0
) -> None:
    """Serve /metrics in a background thread of this process."""
    registry = CollectorRegistry()
    registry.register(
        LedgerCollector(ledger, client, registry, standbys_required=standbys_required)
    )
    start_http_server(port, addr=host, registry=registry)
