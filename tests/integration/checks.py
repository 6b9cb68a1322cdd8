"""Invariant checks against the emulator's and Key Vault's actual state, and leak greps."""

from __future__ import annotations

from rotator.domain.rotation import rotation_id_from_display_name
from rotator.emulator.runner import RunningEmulator
from tests.support.databases import database_text
from tests.support.emulated import ManagedApp, consumer_latest


def assert_invariants(emu: RunningEmulator, app: ManagedApp, database_url: str,
                      *, active_rotation_ids: set[str] | None = None) -> None:
    passwords = emu.tenant.passwords(app.app_id)
    values = {p.secret_text for p in passwords}
    # 1. a working credential, and the consumer secret holds one of the app's current ones
    assert passwords, "the app was left without any secret"
    latest = consumer_latest(emu, app)
    if latest is not None:
        assert latest.value in values, "consumer secret holds a credential the app lost"
        assert latest.tags.get("key_id") in {p.key_id for p in passwords}
    # 2. no secret value in the database
    text = database_text(database_url)
    for value in values | {app.old_secret}:
        assert value not in text, "a secret value reached the database"
    # 3. no orphans: rotator-made credentials are promoted or belong to a live rotation
    live = active_rotation_ids or set()
    for p in passwords:
        rid = rotation_id_from_display_name(p.display_name)
        if rid is not None and rid not in live:
            assert latest is not None and latest.tags.get("key_id") == p.key_id, (
                f"orphan credential {p.key_id} of rotation {rid}")
