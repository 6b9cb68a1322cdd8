"""The invariants checked over the engine tests' fake tenant and vault."""

from __future__ import annotations

from pathlib import Path

from rotator.adapters import certs
from rotator.domain.certificates import CERTIFICATE_CONTENT_TYPES
from rotator.domain.rotation import rotation_id_from_display_name
from rotator.domain.states import ACTIVE_STATES
from tests.support.fakes import CANARY, FakeApp
from tests.support.world import World


def key_canaries(world: World) -> list[bytes]:
    """A slice of every private key rotator wrote to the vault (PEM body or PKCS#12)."""
    out = []
    for versions in world.vault.secrets.values():
        for v in versions:
            if v.content_type in CERTIFICATE_CONTENT_TYPES and v.value is not None:
                text = v.value.reveal()
                body = text.split("-----BEGIN " "PRIVATE KEY-----")[-1] if "BEGIN" in text else text
                out.append(body.strip()[100:160].encode())
    return out


def assert_invariants(world: World, app: FakeApp) -> None:
    # 1. the app keeps a working credential, and the consumer secret holds one
    now = world.clock.now()
    assert any(c.is_valid_at(now) for c in app.credentials)
    consumer = world.vault.latest(f"{app.display_name}-secret")
    if consumer is not None:
        assert consumer.value is not None
        if consumer.content_type in CERTIFICATE_CONTENT_TYPES:
            held = certs.load(consumer.value, consumer.content_type)
            cred = app.credential_of(consumer.tags["key_id"])
            assert cred is not None and cred.thumbprint == held.thumbprint
            assert consumer.tags["thumbprint"] == held.thumbprint and cred.is_valid_at(now)
        else:
            assert consumer.value.reveal() in app.values.values()
            assert consumer.tags["key_id"] in app.values
    # 2. no secret value or private key in the database file
    canaries = [CANARY.encode(), *key_canaries(world)]
    for path in Path(world.tmp).glob("rotator.db*"):
        data = path.read_bytes()
        assert not any(c in data for c in canaries), path
    # 3. every credential rotator created is promoted, or belongs to a rotation in flight
    active = {r.id for r in world.store.list_rotations(app_id=app.app_id)
              if r.state in ACTIVE_STATES}
    for cred in app.credentials:
        rid = rotation_id_from_display_name(cred.display_name)
        if rid is not None and rid not in active:
            assert consumer is not None and consumer.tags["key_id"] == cred.key_id, cred
    # 4. at most one rotation in flight for the app
    assert len(active) <= 1
