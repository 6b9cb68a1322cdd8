"""The admin commands' tests: the emulated tenant and the databases of the integration
tests (``tests/support/emulated.py``), and a tenant with no faults injected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.emulator.faults import Faults
from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import database_url, emu, pg_database

__all__ = ["calm_emu", "database_url", "emu", "pg_database"]


@pytest.fixture
def calm_emu(emu: RunningEmulator) -> Iterator[RunningEmulator]:
    """The emulated tenant with no faults and no lifetime policy, before and after.

    Not autouse: the other tests here (the options fuzz, the pure pieces) need no tenant.
    """
    emu.faults.update(Faults().to_json())
    emu.tenant.set_lifetime_policy(None)
    yield emu
    emu.faults.update(Faults().to_json())
    emu.tenant.set_lifetime_policy(None)
