"""The service as a real process: `rotator serve` subprocesses against the emulated tenant
(the helpers are in ``tests/support/serve.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.adapters.db import migrate
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.support.databases import throwaway_pg_database


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with start_emulator(apps=5, seed=21, workdir=tmp_path_factory.mktemp("emu")) as running:
        yield running


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url
