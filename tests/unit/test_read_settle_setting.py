"""The settle time between reads that must agree (Graph's reads lag its writes) is a
setting of the policy file, and the engine runs with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.bootstrap import engine_deps, load
from rotator.config import ConfigError
from tests.unit.policy_files import env


def test_default_is_three_seconds(tmp_path: Path) -> None:
    assert load(env(tmp_path, "")).policy.daemon.graph_read_settle_seconds == 3.0


async def test_the_engine_settles_for_as_long_as_the_policy_says(tmp_path: Path) -> None:
    loaded = load(env(tmp_path, "graph_read_settle_seconds = 12.5"))
    # Nothing is sent anywhere: building the clients makes no request.
    async with engine_deps(loaded, store=None) as deps:  # type: ignore[arg-type]
        assert deps.read_settle_seconds == 12.5


@pytest.mark.parametrize("value", ["0", "-1", "601", '"3"'])
def test_a_bad_value_is_refused_with_its_line(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env(tmp_path, f"graph_read_settle_seconds = {value}"))
    assert "graph_read_settle_seconds" in str(info.value) and ":2:" in str(info.value)
