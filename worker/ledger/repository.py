"""The ledger: every read and write of gbq's SQL source of truth, split by who asks
(docs/architecture.md): ``ingest`` (the delivery path and the relays), ``delivery_path``,
``sweeps`` (the scheduler) and ``operator_reads``, on a shared ``core``."""

from __future__ import annotations

from worker.ledger.delivery_path import DeliveryPath
from worker.ledger.operator_reads import OperatorReads
from worker.ledger.sweeps import Sweeps


class Ledger(DeliveryPath, Sweeps, OperatorReads):
    """The ledger's operations; one instance per process (engines do not cross forks)."""
