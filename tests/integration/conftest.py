"""Integration fixtures: the emulated tenant over HTTPS, real databases, the real CLI
(``tests/support/emulated.py``). Every test starts and ends with no faults injected
and no lifetime policy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.emulator.faults import Faults
from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import database_url, emu, pg_database

__all__ = ["database_url", "emu", "pg_database"]


@pytest.fixture(autouse=True)
def _calm(emu: RunningEmulator) -> Iterator[None]:
    emu.faults.update(Faults().to_json())
    emu.tenant.set_lifetime_policy(None)
    yield
    emu.faults.update(Faults().to_json())
    emu.tenant.set_lifetime_policy(None)
