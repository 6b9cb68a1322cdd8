"""The pause between retries of a rotation step and the number of attempts before a
rotation gives up are settings of the policy file, and the engine runs with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.bootstrap import engine_deps, load
from rotator.config import ConfigError
from tests.unit.policy_files import env


def test_defaults_are_five_seconds_doubling_to_five_minutes_and_eight_attempts(
    tmp_path: Path,
) -> None:
    daemon = load(env(tmp_path, "")).policy.daemon
    assert (daemon.step_backoff_seconds, daemon.step_backoff_max_seconds,
            daemon.step_max_attempts) == (5.0, 300.0, 8)


async def test_the_engine_retries_as_the_policy_says(tmp_path: Path) -> None:
    loaded = load(env(tmp_path, "step_backoff_seconds = 0.5\nstep_backoff_max_seconds = 2\n"
                                "step_max_attempts = 3"))
    # Nothing is sent anywhere: building the clients makes no request.
    async with engine_deps(loaded, store=None) as deps:  # type: ignore[arg-type]
        assert (deps.step_backoff_seconds, deps.step_backoff_max_seconds,
                deps.max_step_attempts) == (0.5, 2.0, 3)


@pytest.mark.parametrize(("key", "value"), [
    ("step_backoff_seconds", "0"), ("step_backoff_seconds", "3601"),
    ("step_backoff_max_seconds", "-1"), ("step_max_attempts", "0"),
    ("step_max_attempts", "2.5"), ("step_max_attempts", "101"), ("step_max_attempts", '"8"'),
])
def test_a_bad_value_is_refused_with_its_line(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env(tmp_path, f"{key} = {value}"))
    assert key in str(info.value) and ":2:" in str(info.value)


def test_a_cap_below_the_first_pause_is_refused_and_says_what_to_change(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        load(env(tmp_path, "step_backoff_seconds = 30\nstep_backoff_max_seconds = 10"))
    message = str(info.value)
    assert "step_backoff_max_seconds (10) must be at least step_backoff_seconds (30)" in message
    assert ":3:" in message
