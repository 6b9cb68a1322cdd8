"""One randomised fault scenario: a rotation driven through a schedule of faults.

The engine, state table and database are real (SQLite); Graph, Key Vault and the
token endpoint are the in-memory fakes, so hundreds of scenarios run in seconds.
Faults: process crashes after any external write, 5xx / 429 / 409 answers before
any call, token refusals (propagation) up to past the verify deadline, clock jumps.
After every crash and at the end the five invariants are checked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from rotator.adapters.db import Store, make_engine, migrate
from rotator.domain.credentials import CredentialKind
from rotator.domain.states import RotationState
from rotator.engine.start import RotationRefused
from rotator.ports import DirectoryError, SecretStoreError
from tests.engine.conftest import TENANT, World
from tests.engine.test_rotation_flow import assert_invariants, make_app, rotate
from tests.fakes import Crash, FakeClock, FakeDirectory, FakeProbe, FakeSecretStore, Faults

SECRET_CRASH_POINTS = ["add_password", "set_secret:orders-secret-next",
                       "set_secret:orders-secret", "remove_password"]
CERT_CRASH_POINTS = ["set_secret:orders-secret-next", "patch", "add_key",
                     "set_secret:orders-secret", "remove_key"]
ERROR_OPS = ["get", "add_password", "remove_password", "add_key", "remove_key", "patch",
             "set_secret", "get_secret", "disable_version"]
ERRORS = {
    "graph_503": lambda: DirectoryError("Service unavailable", status=503),
    "graph_429": lambda: DirectoryError("TooManyRequests", status=429, retry_after=7),
    "graph_409": lambda: DirectoryError("Directory_ConcurrencyViolation", status=409,
                                        code="Directory_ConcurrencyViolation"),
    "vault_500": lambda: SecretStoreError("InternalServerError", status=500),
}
GRAPH_OPS = {"get", "add_password", "remove_password", "add_key", "remove_key", "patch"}


@dataclass(frozen=True)
class Scenario:
    kind: CredentialKind
    crashes: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]  # (op, error kind)
    refusals: int  # token refusals before the new credential is accepted
    clock_jump_hours: float


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    kind = draw(st.sampled_from([CredentialKind.SECRET, CredentialKind.CERTIFICATE]))
    points = SECRET_CRASH_POINTS if kind is CredentialKind.SECRET else CERT_CRASH_POINTS
    crashes = tuple(draw(st.lists(st.sampled_from(points), max_size=3, unique=True)))
    errors = []
    for op in draw(st.lists(st.sampled_from(ERROR_OPS), max_size=6)):
        pool = [k for k in ERRORS if k.startswith("graph") == (op in GRAPH_OPS)]
        errors.append((op, draw(st.sampled_from(pool))))
    # up to ~80: with the verify timing below that reaches past the 120 s deadline
    refusals = draw(st.integers(min_value=0, max_value=80))
    jump = draw(st.sampled_from([0.0, 0.0, 1.0, 30.0]))
    return Scenario(kind, crashes, tuple(errors), refusals, jump)


@dataclass
class CampaignStats:
    scenarios: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    rolled_back_then_completed: int = 0
    invariants_broken: int = 0
    secrets_leaked: int = 0
    failures: list[str] = field(default_factory=list)


@contextmanager
def fresh_world(template: Path) -> Iterator[World]:
    tmp = Path(tempfile.mkdtemp(prefix="campaign-"))
    try:
        db = tmp / "rotator.db"
        shutil.copy(template, db)
        store = Store(make_engine(f"sqlite:///{db}"))
        clock = FakeClock()
        faults = Faults()
        directory = FakeDirectory(clock, faults)
        world = World(clock, directory, FakeSecretStore(clock, faults),
                      FakeProbe(directory, TENANT), store, faults, tmp)
        try:
            yield world
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def migrated_template(directory: Path) -> Path:
    path = directory / "template.db"
    if not path.exists():
        migrate.upgrade(f"sqlite:///{path}")
    return path


async def run_scenario(world: World, scenario: Scenario, stats: CampaignStats) -> None:
    """Drive one rotation to the end through the scenario's faults; raise on a broken
    invariant (AssertionError)."""
    app = make_app(world, scenario.kind)
    for op, kind in scenario.errors:
        world.faults.before[op].append(ERRORS[kind]())
        stats.faults[kind] += 1
    for point in scenario.crashes:
        world.faults.crash_after.add(point)
    stats.faults["crash"] += len(scenario.crashes)
    world.probe.refuse_first = scenario.refusals
    stats.faults["token_refusal"] += scenario.refusals
    if scenario.clock_jump_hours:
        stats.faults["clock_jump"] += 1
    stats.scenarios += 1
    failed_once = False
    for _ in range(12):  # process lifetimes
        try:
            result = await rotate(world, app)
        except Crash:
            assert_invariants(world, app)
            world.clock.advance(600 + scenario.clock_jump_hours * 3600)  # lease expired
            continue
        except RotationRefused:
            # a read failed while planning: nothing was started; the admin (or the next
            # daemon tick) simply tries again
            assert_invariants(world, app)
            world.clock.advance(60)
            continue
        assert_invariants(world, app)
        if result.state is RotationState.COMPLETED:
            stats.completed += 1
            stats.rolled_back_then_completed += failed_once
            return
        assert result.state is RotationState.FAILED, result.state
        failed_once = True
        # the next try waits out the failure backoff, as the daemon would
        assert result.next_attempt_at is not None
        world.clock.advance((result.next_attempt_at - world.clock.now()).total_seconds() + 1)
    raise AssertionError(f"rotation did not converge for {scenario}")
