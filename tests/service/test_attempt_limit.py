"""The attempt limit and the step backoff are policy keys, and the real service obeys
them: with a Key Vault that refuses every write, `rotator serve` retries the create
step step_max_attempts times, pausing as step_backoff_* say, then rolls the rotation
back, leaving the app with its old secret only (no orphaned new one) and the consumer
secret untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.domain.states import RotationState
from rotator.emulator.invariants import check_tenant, managed_apps
from rotator.emulator.runner import RunningEmulator
from tests.service.scenario import Scenario
from tests.support.serve import CredentialWatch

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

ATTEMPTS = 3


@pytest.fixture(autouse=True)
def calm_vault(emu: RunningEmulator) -> Iterator[None]:
    yield
    emu.faults.update({"error_rates": {}})


def test_a_step_that_keeps_failing_rolls_back_after_the_policy_s_attempts(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "attempt-limit", step_backoff_seconds=0.2,
                 step_backoff_max_seconds=0.5, step_max_attempts=ATTEMPTS)
    # Every Key Vault write fails, forever: the new secret can never be staged.
    emu.faults.update({"error_rates": {"vault.set": {503: 1.0}}})
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        ended = s.wait_state({RotationState.FAILED, RotationState.COMPLETED}, 120,
                             "the rotation to give up")
        assert served.alive()
        assert served.stop() == 0
    assert ended.state is RotationState.FAILED, ended
    assert ended.attempts == ATTEMPTS, ended
    assert f"gave up after {ATTEMPTS} attempts" in (ended.last_error or ""), ended.last_error
    events = s.store.history(rotation_id=ended.id)
    # What counts as an attempt: each failed try ("will retry"), each recovery that
    # removes a secret created by a failed try ("recover"), and the last failed try.
    retries = [e for e in events if "will retry in" in e.message]
    recoveries = [e for e in events if e.step == "recover"]
    assert retries, [e.message for e in events]
    assert len(retries) + len(recoveries) + 1 == ATTEMPTS, [e.message for e in events]
    assert any(e.step == "rollback" and "rolled back" in e.message for e in events)
    # No orphan: the secret created for the rotation was removed again; the consumer
    # secret still holds the old one, which still works.
    assert s.key_ids() == {s.old_key_id}
    s.consumers_still_served()
    assert watch.gaps == []
    assert check_tenant(emu.tenant, s.store, managed_apps(s.policy)) == []
    s.close()
