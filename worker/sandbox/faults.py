"""Fault injection for the sandbox, driven by ``POST /_sandbox/faults``.

Random decisions come from one ``random.Random(seed)``, so the same seed and the same
sequence of requests give the same faults. Count-based faults (``*_count``: the next N
calls) are exact and need no luck, which is what tests usually want.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FaultConfig(BaseModel):
    """The faults in force. Rates are probabilities per write call."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    outage: bool = Field(default=False, description="Every API call answers 503.")
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=500, ge=500, le=599)
    error_count: int = Field(default=0, ge=0, description="The next N write calls fail.")
    latency_s: float = Field(default=0.0, ge=0, le=300)
    latency_jitter_s: float = Field(default=0.0, ge=0, le=300)
    slow_count: int = Field(default=0, ge=0, description="The next N calls wait slow_s more.")
    slow_s: float = Field(default=0.0, ge=0, le=300)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="Forced 429s.")
    rate_limit_count: int = Field(default=0, ge=0, description="The next N write calls get 429.")
    retry_after_s: float | None = Field(
        default=None, ge=0, description="Retry-After sent with forced 429s (none if null)."
    )
    drop_after_apply_rate: float = Field(default=0.0, ge=0, le=1)
    drop_after_apply_count: int = Field(
        default=0, ge=0, description="The next N applied calls lose their response."
    )
    account_disabled: bool = Field(default=False, description="Answer code 50.")
    reject_count: int = Field(
        default=0, ge=0, description="The next N write calls are refused with reject_code."
    )
    reject_code: int = Field(
        default=7,
        ge=1,
        le=9999,
        description="A v3 code (7, 13), answered as its v4 twin on v4; or a v4 code of its "
        "own (1000 and up, e.g. 9007), answered as it is.",
    )


class FaultUpdate(FaultConfig):
    """A partial update: only the fields sent change; ``reset`` clears everything first."""

    reset: bool = False


class FaultInjector:
    """Holds the fault configuration and makes the (seeded) decisions."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.config = FaultConfig()
        self._random = random.Random(seed)

    def reset(self) -> None:
        self.config = FaultConfig()
        self._random = random.Random(self.seed)

    def update(self, payload: dict[str, Any]) -> FaultConfig:
        """Apply a partial update (validated by :class:`FaultUpdate`)."""
        update = FaultUpdate.model_validate(payload)
        if update.reset:
            self.config = FaultConfig()
        for name in update.model_fields_set - {"reset"}:
            setattr(self.config, name, getattr(update, name))
        return self.config

    def latency_s(self) -> float:
        config = self.config
        extra = config.slow_s if self._take("slow_count") else 0.0
        if config.latency_jitter_s:
            return extra + config.latency_s + self._random.uniform(0, config.latency_jitter_s)
        return extra + config.latency_s

    def server_error(self) -> bool:
        return self._take("error_count") or self._chance(self.config.error_rate)

    def rejected(self) -> int | None:
        """The business error code the next write gets, if one is injected."""
        return self.config.reject_code if self._take("reject_count") else None

    def rate_limited(self) -> bool:
        return self._take("rate_limit_count") or self._chance(self.config.rate_limit_rate)

    def drop_after_apply(self) -> bool:
        return self._take("drop_after_apply_count") or self._chance(
            self.config.drop_after_apply_rate
        )

    def _take(self, counter: str) -> bool:
        remaining: int = getattr(self.config, counter)
        if remaining <= 0:
            return False
        setattr(self.config, counter, remaining - 1)
        return True

    def _chance(self, rate: float) -> bool:
        # Draw only when a rate is set, so unrelated faults do not shift the sequence.
        return rate > 0 and self._random.random() < rate
