"""Certificate rotation through the real engine and database, with fake outside services.

Crash-after-every-write for certificates lives with the secret cases in
test_rotation_flow (one parametrized test).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from rotator import certificate_material as certs
from rotator.domain.certificates import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE
from rotator.domain.credentials import Credential, CredentialKind
from rotator.domain.rotation import Registration, RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.start import RotationRefused, plan_rotation, start_rotation
from tests.support.fakes import Crash, FakeApp
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate


def cert_app(world: World, **policy: object) -> FakeApp:
    app = world.directory.add_cert_app("orders")
    world.manage(app, credential="certificate", **policy)
    return app


def other_writer_cert(world: World) -> bytes:
    now = world.clock.now()
    return certs.generate("RSA2048", "CN=someone-else", now, now + timedelta(days=30)).der


async def test_first_rotation_patches_and_the_second_uses_add_key_signed_by_the_stored_key(
    world: World,
) -> None:
    app = cert_app(world)
    original = app.credentials[0].key_id
    first = await rotate(world, app)
    assert first.state is RotationState.COMPLETED, first.last_error
    assert first.registered_by is Registration.PATCH
    assert "add_key" not in world.directory.calls
    consumer = world.vault.latest("orders-secret")
    assert consumer is not None and consumer.value is not None
    assert consumer.content_type == PEM_CONTENT_TYPE
    stored = certs.load(consumer.value, consumer.content_type)
    assert consumer.tags["key_id"] == first.new_key_id
    assert consumer.tags["thumbprint"] == stored.thumbprint == first.thumbprint
    assert consumer.tags["app_id"] == app.app_id and consumer.tags["rotation_id"] == first.id
    assert consumer.expires_on == first.new_key_end_at
    # the original (key unknown to rotator) was removed with a proof by the new certificate
    assert app.credential_of(original) is None
    assert world.directory.proof_signers == [stored.thumbprint]
    assert_invariants(world, app)

    world.clock.advance(3600)
    second = await rotate(world, app)
    assert second.state is RotationState.COMPLETED, second.last_error
    assert second.registered_by is Registration.ADD_KEY
    assert second.old_key_id == first.new_key_id
    # addKey proven by the first stored key; retirement proven by the new one
    latest = world.vault.latest("orders-secret")
    assert latest is not None and latest.value is not None
    newest = certs.load(latest.value, latest.content_type)
    assert world.directory.proof_signers[1:] == [stored.thumbprint, newest.thumbprint]
    assert [c.key_id for c in app.credentials] == [second.new_key_id]
    assert_invariants(world, app)


async def test_pkcs12_format_and_key_type_follow_the_policy(world: World) -> None:
    app = cert_app(world, key_vault_format="pkcs12", key_type="RSA3072",
                   certificate_subject="CN=orders.example")
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    consumer = world.vault.latest("orders-secret")
    assert consumer is not None and consumer.value is not None
    assert consumer.content_type == PKCS12_CONTENT_TYPE
    held = certs.load(consumer.value, consumer.content_type)
    assert held.private_key.key_size == 3072  # type: ignore[union-attr]
    assert held.certificate.subject.rfc4514_string() == "CN=orders.example"
    # verify handed the probe PEM of the same key
    assert certs.load(world.probe.pem_bundles[-1], PEM_CONTENT_TYPE).thumbprint == held.thumbprint
    assert_invariants(world, app)


async def test_failed_verification_removes_the_new_certificate_with_its_own_proof(
    world: World,
) -> None:
    app = cert_app(world)
    original = app.credentials[0]
    world.probe.refuse_first = 10_000
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert app.credentials == [original]
    assert world.vault.latest("orders-secret") is None
    staged = world.vault.latest("orders-secret-next")
    assert staged is not None and not staged.enabled and staged.value is not None
    assert world.directory.proof_signers == [certs.load(staged.value, PEM_CONTENT_TYPE).thumbprint]
    assert_invariants(world, app)


async def test_rollback_after_a_crash_before_the_version_was_recorded(world: World) -> None:
    """Registered by PATCH, then the process died; a later failure still cleans up."""
    app = cert_app(world)
    world.faults.crash_after.add("patch")
    with pytest.raises(Crash):
        await rotate(world, app)
    world.clock.advance(600)
    world.probe.refuse_first = 10_000
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert len(app.credentials) == 1
    assert all(not v.enabled for v in world.vault.secrets["orders-secret-next"])


async def test_patch_keeps_a_certificate_another_writer_added_after_rotators_read(
    world: World,
) -> None:
    app = cert_app(world)
    theirs: list[Credential] = []

    def other_writer(target: FakeApp, reads: int) -> None:
        if reads == 1:  # right after rotator's first read of the list
            theirs.append(world.directory.put_certificate(target, other_writer_cert(world),
                                                          "added by someone else"))

    world.directory.after_key_read = other_writer
    result = await rotate(world, app, retire_now=False)
    assert result.state is RotationState.PROMOTED, result.last_error
    ids = {c.key_id for c in app.credentials}
    assert theirs and theirs[0].key_id in ids and result.new_key_id in ids
    assert world.directory.calls.count("patch") == 1  # it re-read before writing


async def test_a_concurrent_patch_that_drops_rotators_certificate_is_repaired(
    world: World,
) -> None:
    app = cert_app(world)
    theirs: list[Credential] = []

    def stale_patch(target: FakeApp, before: list[Credential]) -> None:
        # Another tool PATCHes with the list it read before rotator's write, plus its own.
        if not theirs:
            target.credentials = list(before)
            theirs.append(world.directory.put_certificate(target, other_writer_cert(world),
                                                          "stale writer"))

    world.directory.after_patch = stale_patch
    result = await rotate(world, app, retire_now=False)
    assert result.state is RotationState.PROMOTED, result.last_error
    ids = {c.key_id for c in app.credentials}
    assert theirs[0].key_id in ids and result.new_key_id in ids
    assert world.directory.calls.count("patch") == 2


async def test_a_staged_certificate_too_old_to_register_is_replaced(world: World) -> None:
    app = cert_app(world, lifetime_days=100, renew_before_days=10)
    world.faults.crash_after.add("set_secret:orders-secret-next")
    with pytest.raises(Crash):
        await rotate(world, app)
    first_staged = world.vault.latest("orders-secret-next")
    assert first_staged is not None
    world.clock.advance(15 * 86400)  # more than 10 % of the lifetime went by
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    versions = world.vault.secrets["orders-secret-next"]
    assert len(versions) == 2 and not versions[0].enabled
    assert result.staging_version == versions[1].version
    assert_invariants(world, app)


async def test_a_registered_certificate_whose_key_was_never_staged_is_removed(
    world: World,
) -> None:
    app = cert_app(world)
    world.faults.crash_after.add("patch")
    with pytest.raises(Crash):
        await rotate(world, app)
    stray = next(c for c in app.credentials if c.display_name != "original")
    world.vault.secrets.pop("orders-secret-next")  # the world disagrees: no staged key
    world.clock.advance(600)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert app.credential_of(stray.key_id) is None
    assert [c.key_id for c in app.credentials] == [result.new_key_id]
    assert_invariants(world, app)


async def test_default_kind_is_the_expiring_credentials_kind(world: World) -> None:
    app = world.directory.add_cert_app("orders")
    world.manage(app)  # no credential key in the policy
    plan = await plan_rotation(world.deps(), app.app_id)
    assert plan.kind is CredentialKind.CERTIFICATE
    assert plan.old is not None and plan.old.key_id == app.credentials[0].key_id


async def test_ec_keys_are_refused_before_anything_changes(world: World) -> None:
    app = cert_app(world, key_type="EC_P256")
    with pytest.raises(RotationRefused, match="RSA"):
        await plan_rotation(world.deps(), app.app_id)


async def test_grace_period_then_retire_with_a_proof_by_the_new_certificate(
    world: World,
) -> None:
    app = cert_app(world, grace_hours=24)
    original = app.credentials[0].key_id
    deps = world.deps()
    rotation = await start_rotation(deps, await plan_rotation(deps, app.app_id),
                              reason=RotationReason.DUE)
    promoted = await drive(deps, rotation.id)
    assert promoted.state is RotationState.PROMOTED
    assert app.credential_of(original) is not None
    world.clock.advance(25 * 3600)
    done = await drive(world.deps(), rotation.id)
    assert done.state is RotationState.COMPLETED
    assert app.credential_of(original) is None
    assert "remove_key" in world.directory.calls
    assert_invariants(world, app)
