"""Talking to Gameball: payloads (v3.0/v4.0), the HTTP client and ``classify()``."""

from worker.gameball.client import Attempt, GameballClient, GameballConfigError, Redactor
from worker.gameball.outcomes import HttpAnswer, Outcome, OutcomeKind, Reason, classify
from worker.gameball.payloads import GameballRequest, build_request, call_kind

__all__ = [
    "Attempt",
    "GameballClient",
    "GameballConfigError",
    "GameballRequest",
    "HttpAnswer",
    "Outcome",
    "OutcomeKind",
    "Reason",
    "Redactor",
    "build_request",
    "call_kind",
    "classify",
]
