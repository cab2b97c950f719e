"""Every Redis key gbq uses, the checkout's and the worker's alike, in one place: the ACLs
in docs/security.md and the key table in docs/architecture.md are checked against it.

Keys that end in ``:`` are prefixes; the rest of the name says what follows.
"""

from __future__ import annotations

from typing import Final

# --- written by checkout (producers) -----------------------------------------------------
QUEUE: Final = "gbq"  # the Celery queue (a list): delivery messages, the fast path
INBOX_KEY: Final = "gbq:inbox"  # hash: event_id → envelope, until the ledger has it
INBOX_DUE_KEY: Final = "gbq:inbox:due"  # sorted set: event_id → publish time
ORDER_INBOX_PREFIX: Final = "gbq:inbox:order:"  # + order id: set of its events in the inbox
# sorted set: event_id → when a worker was done with its inbox entry, kept (with
# GBQ_LEDGER_STANDBYS) until the ledger's standbys have what it committed
INBOX_KEPT_KEY: Final = "gbq:inbox:kept"
INBOX_SHA_KEY: Final = "gbq:inbox:sha"  # hash: event_id → content hash of the first accepted
CONFLICTS_KEY: Final = "gbq:conflicts"  # list: envelopes found conflicting in a spool relay
QUARANTINE_KEY: Final = "gbq:quarantine"  # list: unreadable input, until buried in the ledger
SPOOLS_KEY: Final = "gbq:spools"  # hash: host and spool path → what waits in that spool

# --- written by the worker ---------------------------------------------------------------
BREAKER_KEY: Final = "gbq:breaker"  # the shared circuit breaker's state (JSON)
RATE_LIMIT_PREFIX: Final = "gbq:ratelimit:"  # + bucket + ":1s" / ":30s": GCRA arrival times
ALIVE_PREFIX: Final = "gbq:alive:"  # + lease owner: a delivering process's heartbeat
LEADER_KEY: Final = "gbq:scheduler:leader"  # the scheduler that leads (with a TTL)
SCHEDULER_ALIVE_PREFIX: Final = "gbq:scheduler:alive:"  # + owner: a scheduler's heartbeat
SCHEDULER_TICKED_KEY: Final = "gbq:scheduler:ticked"  # Redis time of the leader's last tick
RATE_LIMIT_WAITS_KEY: Final = "gbq:stats:rate_limit_waits"  # counter (a metric)
BREAKER_DEFERRALS_KEY: Final = "gbq:stats:breaker_deferrals"  # counter (a metric)
