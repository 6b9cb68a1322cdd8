"""The invariant checks of ``rotator/emulator/invariants.py``, for tests.

Over the emulated tenant (:func:`assert_tenant_invariants`: the integration suite,
the crash matrix) and over the engine tests' in-memory fakes (:func:`assert_invariants`,
through :class:`FakeTenant`, a view of the fakes that the same checks read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from rotator.adapters.db import SqlStore, make_engine
from rotator.domain.certificates import CERTIFICATE_CONTENT_TYPES
from rotator.domain.credentials import CredentialKind
from rotator.emulator.invariants import (
    Managed,
    SeenApp,
    SeenCredential,
    SeenVersion,
    check_tenant,
    database_files,
    managed_apps,
    private_key_slices,
    violations,
)
from rotator.emulator.runner import RunningEmulator
from tests.support.databases import database_text
from tests.support.emulated import CANARY as CANARY_PREFIX
from tests.support.emulated import ManagedApp
from tests.support.fakes import CANARY, FakeApp
from tests.support.world import World

# ------------------------------------------------------------------ the emulated tenant


def assert_tenant_invariants(
    emu: RunningEmulator,
    database_url: str,
    apps: Iterable[Managed],
    *,
    outputs: Sequence[str] = (),
    known_secrets: Iterable[str] = (),
    allow_in_flight: bool = False,
    allow_no_consumer: bool = False,
) -> None:
    """The invariants hold for ``apps``, and no secret is in the database or ``outputs``."""
    places: dict[str, str | bytes] = {"the database": database_text(database_url)}
    places.update({f"output {i + 1}": text for i, text in enumerate(outputs)})
    store = SqlStore(make_engine(database_url, poolclass=sa.pool.NullPool))
    try:
        problems = check_tenant(emu.tenant, store, apps, places=places,
                                known_secrets=known_secrets, allow_in_flight=allow_in_flight,
                                allow_no_consumer=allow_no_consumer)
    finally:
        store.close()
    assert problems == [], problems


def assert_app_invariants(emu: RunningEmulator, app: ManagedApp, database_url: str, *,
                          allow_in_flight: bool = False, allow_no_consumer: bool = False,
                          outputs: Sequence[str] = ()) -> None:
    """:func:`assert_tenant_invariants` for one app of :func:`tests.support.emulated.make_app`,
    whose original (canary) secret must not be in the database either."""
    assert_tenant_invariants(
        emu, database_url, [Managed(app.app_id, app.secret_name, CredentialKind.SECRET)],
        outputs=outputs, known_secrets=[app.old_secret, CANARY_PREFIX],
        allow_in_flight=allow_in_flight, allow_no_consumer=allow_no_consumer)


# ------------------------------------------------------------------ the fakes


class FakeTenant:
    """The engine tests' fake directory and vault as the invariant checks see them."""

    def __init__(self, world: World) -> None:
        self._world = world

    def now(self) -> datetime:
        return self._world.clock.now()

    def app(self, app_id: str) -> SeenApp | None:
        app = self._world.directory.by_app_id(app_id)
        if app is None:
            return None
        return SeenApp(app.display_name, tuple(
            SeenCredential(c.key_id, c.kind, c.display_name, c.start, c.end,
                           secret_text=app.values.get(c.key_id), thumbprint=c.thumbprint)
            for c in app.credentials
        ))

    def versions(self, secret_name: str) -> list[SeenVersion]:
        return [SeenVersion(v.value.reveal() if v.value is not None else None, v.content_type,
                            dict(v.tags), v.enabled)
                for v in self._world.vault.secrets.get(secret_name) or []]


def assert_invariants(world: World, app: FakeApp) -> None:
    """The invariants hold for ``app`` at any moment of a rotation (one may be in flight,
    nothing may have been promoted yet), and no secret is in the database files."""
    assert world.policy is not None
    [managed] = [m for m in managed_apps(world.policy) if m.app_id == app.app_id]
    problems = violations(FakeTenant(world), world.store, [managed],
                          allow_in_flight=True, allow_no_consumer=True,
                          places=database_files(world.tmp / "rotator.db"),
                          known_secrets=[CANARY])
    assert problems == [], problems


def key_canaries(world: World) -> list[str]:
    """Slices of every private key rotator wrote to the fake vault."""
    return [piece
            for versions in world.vault.secrets.values() for v in versions
            if v.content_type in CERTIFICATE_CONTENT_TYPES and v.value is not None
            for piece in private_key_slices(v.value.reveal(), v.content_type)]

