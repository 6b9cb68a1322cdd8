"""The state table, walked: every state reachable, every path ends, nothing skips verify."""

from collections import deque

import pytest

from rotator.domain.states import (
    ACTIVE_STATES,
    BEFORE_PROMOTE,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    RotationState,
    check_transition,
)


def reachable(start: RotationState) -> set[RotationState]:
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_state_is_reachable_from_pending() -> None:
    assert reachable(RotationState.PENDING) == set(RotationState)


def test_every_active_state_can_still_end() -> None:
    for state in ACTIVE_STATES:
        assert reachable(state) & TERMINAL_STATES, state


def test_terminal_states_are_completed_and_failed() -> None:
    assert {RotationState.COMPLETED, RotationState.FAILED} == TERMINAL_STATES


def test_promotion_only_after_verification() -> None:
    sources = {s for s, targets in TRANSITIONS.items() if RotationState.PROMOTED in targets}
    assert sources == {RotationState.VERIFIED}


def test_no_rollback_after_promote() -> None:
    after = reachable(RotationState.PROMOTED)
    assert RotationState.ROLLING_BACK not in after
    assert RotationState.FAILED not in after


def test_every_state_before_promote_can_roll_back() -> None:
    for state in BEFORE_PROMOTE:
        assert RotationState.ROLLING_BACK in TRANSITIONS[state]


@pytest.mark.parametrize("current", list(RotationState))
@pytest.mark.parametrize("target", list(RotationState))
def test_check_transition_follows_the_table(current: RotationState,
                                            target: RotationState) -> None:
    if target in TRANSITIONS[current]:
        assert check_transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)
