import random
from datetime import timedelta

from rotator.domain.backoff import failure_backoff, jittered, step_retry_delay


def test_failure_backoff_doubles_from_an_hour_and_caps() -> None:
    assert failure_backoff(0) == timedelta(0)
    assert failure_backoff(1) == timedelta(hours=1)
    assert failure_backoff(3) == timedelta(hours=4)
    assert failure_backoff(30) == timedelta(hours=32)


def test_retry_after_is_a_floor() -> None:
    assert step_retry_delay(1, retry_after=30) == 30
    assert step_retry_delay(4, retry_after=1) == 40
    assert step_retry_delay(20) == 300


def test_jitter_stays_within_half_and_whole() -> None:
    rng = random.Random(1)
    for _ in range(100):
        assert 5 <= jittered(10, rng) <= 10
