"""Waiting rules: failure backoff between rotations, retry delays inside a step."""

from __future__ import annotations

import random
from datetime import timedelta

FAILURE_BASE = timedelta(hours=1)
FAILURE_CAP = timedelta(hours=32)


def failure_backoff(consecutive_failures: int) -> timedelta:
    """cert-manager style: 1 h after the first failure, doubling, capped at 32 h."""
    if consecutive_failures <= 0:
        return timedelta(0)
    doubled: timedelta = FAILURE_BASE * (2 ** min(consecutive_failures - 1, 16))
    return min(FAILURE_CAP, doubled)


def step_retry_delay(
    attempt: int,
    *,
    base_seconds: float = 5.0,
    cap_seconds: float = 300.0,
    retry_after: float | None = None,
) -> float:
    """Delay before retrying a step after a transient error.

    The service's ``Retry-After`` is a floor, never shortened; otherwise
    exponential from ``base_seconds``.
    """
    computed: float = min(cap_seconds, base_seconds * 2.0 ** min(max(0, attempt - 1), 32))
    if retry_after is not None:
        return max(computed if attempt > 1 else 0.0, retry_after)
    return computed


def jittered(delay: float, rng: random.Random | None = None) -> float:
    """'Equal jitter': keep half, randomise the other half, so replicas spread out."""
    r = rng or random
    return delay / 2 + r.uniform(0, delay / 2)
