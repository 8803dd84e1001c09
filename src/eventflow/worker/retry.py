"""Retry policy: exponential backoff with jitter, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_ms: int = 1000
    max_ms: int = 300_000
    jitter: float = 0.2

    def backoff_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """Delay after failed ``attempt`` n (1-based): ``min(max, base·2^(n-1))`` ±20 %."""
        exponent = min(attempt - 1, 62)
        raw = min(self.max_ms, self.base_ms * (1 << exponent))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(1, round(raw * spread))

    def exhausted(self, attempt_in_round: int) -> bool:
        return attempt_in_round >= self.max_attempts
