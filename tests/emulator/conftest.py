"""One emulated tenant for the whole emulator suite (tests must undo what they change)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rotator.emulator.faults import Faults
from rotator.emulator.runner import RunningEmulator, start_emulator


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with start_emulator(apps=40, seed=7, workdir=tmp_path_factory.mktemp("emu")) as running:
        yield running


@pytest.fixture(autouse=True)
def _calm(emu: RunningEmulator) -> Iterator[None]:
    """Every test starts and ends with no faults and no lifetime policy."""
    _reset(emu)
    yield
    _reset(emu)


def _reset(emu: RunningEmulator) -> None:
    defaults = Faults()
    emu.faults.update(defaults.to_json())
    emu.tenant.set_lifetime_policy(None)
    emu.tenant.graph_consistency_seconds = GRAPH_CONSISTENCY_SECONDS


GRAPH_CONSISTENCY_SECONDS = 2.0  # the emulator's default: reads may lag writes


@pytest.fixture
def consistent_reads(emu: RunningEmulator) -> None:
    """For tests that read back what they just wrote to check the write itself."""
    emu.tenant.graph_consistency_seconds = 0


@pytest.fixture
def http(emu: RunningEmulator) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(emu.ca_file))
    with httpx.Client(base_url=emu.base_url, verify=context, timeout=30) as client:
        yield client


@pytest.fixture
def ca_path(emu: RunningEmulator) -> Path:
    return emu.ca_file
