"""The rotation state machine as one table, with no I/O (the h11 way).

A rotation moves forward one step at a time; each state names what is already
true in the outside world, so a process that dies can always resume from the
recorded state after checking the world again (recovery).

    pending ─► creating ─► staged ─► verified ─► promoted ─► retiring ─► completed
       │          │          │          │
       └──────────┴──────────┴──────────┴─► rolling_back ─► failed

- ``pending``: the row exists; nothing outside has been touched.
- ``creating``: the engine is about to create the new credential (its display
  name carries the rotation id) and stage its material. Recovery looks for both.
- ``staged``: the new credential exists in Entra and its material is in the
  staging secret. Consumers still read the old one.
- ``verified``: enough consecutive token requests with the new credential passed.
- ``promoted``: the consumer secret's latest version holds the new credential;
  the old one waits out the grace period.
- ``retiring``: the engine is removing the superseded credential.
- ``rolling_back``: a failure before promote; the new credential is being removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class RotationState(StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    STAGED = "staged"
    VERIFIED = "verified"
    PROMOTED = "promoted"
    RETIRING = "retiring"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    FAILED = "failed"


TRANSITIONS: Final[Mapping[RotationState, frozenset[RotationState]]] = {
    RotationState.PENDING: frozenset({RotationState.CREATING, RotationState.FAILED}),
    # creating -> pending: recovery removed a credential whose value was never stored
    # and starts the create step over.
    RotationState.CREATING: frozenset(
        {RotationState.STAGED, RotationState.PENDING, RotationState.ROLLING_BACK}
    ),
    RotationState.STAGED: frozenset({RotationState.VERIFIED, RotationState.ROLLING_BACK}),
    RotationState.VERIFIED: frozenset({RotationState.PROMOTED, RotationState.ROLLING_BACK}),
    # After promote there is no rollback: consumers may already use the new
    # credential, and the old one is still valid until retirement.
    RotationState.PROMOTED: frozenset({RotationState.RETIRING, RotationState.COMPLETED}),
    RotationState.RETIRING: frozenset({RotationState.COMPLETED}),
    RotationState.ROLLING_BACK: frozenset({RotationState.FAILED}),
    RotationState.COMPLETED: frozenset(),
    RotationState.FAILED: frozenset(),
}

ACTIVE_STATES: Final = frozenset(s for s in RotationState if TRANSITIONS[s])
TERMINAL_STATES: Final = frozenset(s for s in RotationState if not TRANSITIONS[s])
# States in which the new credential may exist in Entra but consumers have not got it:
# a failure here must remove it.
BEFORE_PROMOTE: Final = frozenset(
    {RotationState.CREATING, RotationState.STAGED, RotationState.VERIFIED}
)


class IllegalTransition(ValueError):
    pass


def check_transition(current: RotationState, target: RotationState) -> RotationState:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"rotation cannot go from {current} to {target}")
    return target
