"""The engine tests' world: the real steps and database (SQLite), fake Graph, Key Vault,
token endpoint and clock (``tests/support/fakes.py``).

The ``world`` fixture is used by the engine and alert tests (their conftests import
it) and, through :func:`tests.campaign.scenario.fresh_world`, by the fault campaign.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotator.adapters.db import SqlStore
from rotator.adapters.db.migrate import upgrade
from rotator.adapters.db.session import make_engine
from rotator.config import Policy, load_policy, load_settings
from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import Rotation, RotationReason
from rotator.engine.context import EngineDeps, VerifyTiming
from rotator.engine.driver import drive
from rotator.engine.start import plan_rotation, start_rotation
from tests.support.fakes import (
    FakeApp,
    FakeCertificateStore,
    FakeClock,
    FakeDirectory,
    FakeProbe,
    FakeSecretStore,
    Faults,
)

TENANT = "11111111-2222-3333-4444-555555555555"
VAULT = "https://vault.example.test"


@dataclass
class World:
    clock: FakeClock
    directory: FakeDirectory
    vault: FakeSecretStore
    probe: FakeProbe
    store: SqlStore
    faults: Faults
    tmp: Path
    policy: Policy | None = None
    certificates: FakeCertificateStore | None = None

    def __post_init__(self) -> None:
        if self.certificates is None:
            self.certificates = FakeCertificateStore(self.vault)

    def manage(self, *apps: FakeApp, app_toml: str = "", **overrides: object) -> Policy:
        """The policy managing ``apps``; ``app_toml`` is appended to each ``[[app]]``
        (its keys, then any ``[[app.hook]]`` tables)."""
        lines = ["[defaults]", f'vault_url = "{VAULT}"', "verify_successes = 3",
                 "verify_timeout_seconds = 120"]
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in overrides.items()
                  if k in {"grace_hours", "retire_when", "quiet_hours", "retire_max_wait_hours",
                           "lifetime_days", "renew_before_days", "credential",
                           "key_type", "key_vault_format", "certificate_subject",
                           "certificate_content_type", "key_source"}]
        for app in apps:
            lines += ["[[app]]", f'app_id = "{app.app_id}"',
                      f'secret_name = "{app.display_name}-secret"']
            if app.roles:
                lines.append(f'expected_roles = ["{app.roles[0]}"]')
            if app_toml:
                lines.append(app_toml)
        path = self.tmp / "policy.toml"
        path.write_text("\n".join(lines) + "\n")
        settings = load_settings({"ROTATOR_VAULT_URL": VAULT})
        self.policy = load_policy(path, settings)
        return self.policy

    def deps(self, **overrides: object) -> EngineDeps:
        assert self.policy is not None, "call manage() first"
        kwargs: dict[str, object] = dict(
            directory=self.directory,
            secret_store_for=lambda url: self.vault,
            certificate_store_for=lambda url: self.certificates,
            probe=self.probe,
            store=self.store,
            policy=self.policy,
            tenant_id=TENANT,
            clock=self.clock,
            sleep=self.clock.sleep,
            rng=random.Random(7),
            verify_timing=VerifyTiming(success_interval=1, refusal_base=0.5, refusal_cap=4),
        )
        kwargs.update(overrides)
        return EngineDeps(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    url = f"sqlite:///{tmp_path / 'rotator.db'}"
    upgrade(url)
    store = SqlStore(make_engine(url))
    clock = FakeClock()
    faults = Faults()
    directory = FakeDirectory(clock, faults)
    vault = FakeSecretStore(clock, faults)
    yield World(clock, directory, vault, FakeProbe(directory, TENANT), store, faults, tmp_path)
    store.close()


def make_app(world: World, kind: CredentialKind) -> FakeApp:
    """An app called ``orders`` with one credential of ``kind``, managed by the policy."""
    if kind is CredentialKind.CERTIFICATE:
        app = world.directory.add_cert_app("orders")
        world.manage(app, credential="certificate")
        return app
    app = world.directory.add_app("orders")
    world.manage(app)
    return app


async def rotate(world: World, app: FakeApp, *, retire_now: bool = True,
                 **deps_overrides: object) -> Rotation:
    """Plan, start and drive one manual rotation of ``app`` to where it stops."""
    deps = world.deps(**deps_overrides)
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=retire_now)
    return await drive(deps, rotation.id, retire_now=retire_now)
