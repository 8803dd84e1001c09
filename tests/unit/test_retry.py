"""Backoff: min(max, base·2^(n-1)) with ±20 % jitter."""

from __future__ import annotations

import random

from eventflow.worker.retry import RetryPolicy


def test_backoff_doubles_within_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_ms=1000, max_ms=300_000)
    rng = random.Random(7)
    for attempt, expected in ((1, 1000), (2, 2000), (3, 4000), (6, 32_000)):
        delays = [policy.backoff_ms(attempt, rng) for _ in range(200)]
        assert min(delays) >= expected * 0.8
        assert max(delays) <= expected * 1.2
        assert max(delays) - min(delays) > expected * 0.2, "jitter must spread retries"


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base_ms=1000, max_ms=5000)
    assert all(policy.backoff_ms(60) <= 6000 for _ in range(100))
    assert all(policy.backoff_ms(1000) >= 4000 for _ in range(100))


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
