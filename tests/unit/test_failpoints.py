"""The failpoint switch and catalogue: inert by default, strict about names."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.domain.states import RotationState
from rotator.failpoints import POINTS, FailpointError, Failpoints, parse


def test_inert_without_the_explicit_switch() -> None:
    fp = Failpoints.from_environ({"ROTATOR_FAILPOINTS": "after:graph.add_password=raise"})
    assert not fp.active
    fp.hit("after:graph.add_password")  # nothing happens


def test_unknown_names_and_actions_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown failpoint 'after:graph\.add_pasword'"):
        parse("after:graph.add_pasword=kill")
    with pytest.raises(ValueError, match="kill or raise"):
        parse("after:graph.add_password=explode")


def test_every_state_change_has_a_point_before_and_after() -> None:
    for state in RotationState:
        assert {f"before:db.{state}", f"after:db.{state}"} <= POINTS


def test_a_point_fires_once_and_the_trace_records_every_point_passed(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    fp = Failpoints.from_environ({
        "ROTATOR_ENABLE_FAILPOINTS": "1",
        "ROTATOR_FAILPOINTS": " after:db.staged = raise ",
        "ROTATOR_FAILPOINTS_TRACE": str(trace),
    })
    fp.hit("before:db.staged")
    with pytest.raises(FailpointError, match=r"after:db\.staged"):
        fp.hit("after:db.staged")
    fp.hit("after:db.staged")
    assert trace.read_text().split() == ["before:db.staged", "after:db.staged",
                                         "after:db.staged"]
