"""Invariant checks against the emulator's and Key Vault's actual state, and leak greps."""

from __future__ import annotations

import time

from rotator.adapters.sdk_clients import sync_secret_credential
from rotator.domain.rotation import rotation_id_from_display_name
from rotator.emulator.runner import RunningEmulator
from tests.integration.conftest import ManagedApp
from tests.support.databases import database_text


def consumer_latest(emu: RunningEmulator, app: ManagedApp):  # type: ignore[no-untyped-def]
    versions = emu.tenant.vault.versions(app.secret_name)
    return versions[-1] if versions else None


def token_works(emu: RunningEmulator, app_id: str, secret: str, tries: int = 20) -> bool:
    """A real client-credentials request; retried briefly because replicas learn late."""
    for _ in range(tries):
        credential = sync_secret_credential(
            emu.env["AZURE_TENANT_ID"], app_id, secret,
            authority_host=emu.env["ROTATOR_AUTHORITY_HOST"],
            ca_bundle=emu.env["ROTATOR_CA_BUNDLE"],
        )
        try:
            credential.get_token("https://graph.microsoft.com/.default")
            return True
        except Exception:
            time.sleep(0.5)
        finally:
            credential.close()
    return False


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
