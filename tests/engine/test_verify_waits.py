"""Verify against a token endpoint that throttles, or that refuses for a reason time
will not fix: the first is waited out as long as it asks (within the deadline), the
second fails the step at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from rotator import throttle_waits
from rotator.domain.states import RotationState
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate


@pytest.fixture
def waits() -> Iterator[list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    unsubscribe = throttle_waits.subscribe(lambda service, s: seen.append((service, s)))
    yield seen
    unsubscribe()


class Sleeps:
    def __init__(self, world: World) -> None:
        self.world = world
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await self.world.clock.sleep(seconds)


async def test_retry_after_of_the_token_endpoint_is_honoured_past_the_backoff_cap(
    world: World, waits: list[tuple[str, float]]
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.probe.throttled_first = 1
    world.probe.throttle_retry_after = 30  # far above the verify backoff cap (4 s here)
    sleeps = Sleeps(world)
    with structlog.testing.capture_logs() as logs:
        result = await rotate(world, app, sleep=sleeps)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert 30 in sleeps.pauses
    assert waits == [("token", 30)]
    [event] = [e for e in logs if e["event"].startswith("waiting as the service asked")]
    assert event["service"] == "token" and event["wait_seconds"] == 30
    assert event["status"] == 429
    assert_invariants(world, app)


async def test_retry_after_beyond_the_deadline_is_waited_only_to_the_deadline(
    world: World,
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)  # verify_timeout_seconds = 120
    world.probe.throttled_first = 1
    world.probe.throttle_retry_after = 3600
    sleeps = Sleeps(world)
    result = await rotate(world, app, sleep=sleeps)
    assert max(sleeps.pauses) <= 120
    assert result.state is RotationState.FAILED
    assert "verification did not get" in (result.last_error or "")
    assert_invariants(world, app)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("AADSTS700023", "authority host"),
        ("AADSTS700024", "clock"),
        ("AADSTS90002", "tenant was not found"),
    ],
)
async def test_configuration_errors_fail_verify_at_the_first_attempt(
    world: World, code: str, words: str
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.probe.refuse_with = code
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert world.probe.attempts == 1
    assert code in (result.last_error or "") and words in (result.last_error or "")
    assert len(app.credentials) == 1  # the new secret was rolled back
    assert_invariants(world, app)
