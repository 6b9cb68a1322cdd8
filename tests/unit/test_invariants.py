"""The invariant checker (rotator/emulator/invariants.py) finds each broken invariant,
says which, and never repeats a secret value. It reads an emulated tenant object here;
no server runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from rotator import certificate_material as certs
from rotator.domain.certificates import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE
from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.emulator.invariants import Managed, check_tenant, private_key_slices
from rotator.emulator.model import Application
from rotator.emulator.tenant import Tenant
from tests.support.records import make_rotation

NOW = datetime.now(UTC)
VALUE = "abc8Q~the-current-secret-value-0123456789"
OTHER = "xyz8Q~another-secret-value-9876543210abc"


class Records:
    def __init__(self, *rotations: Rotation) -> None:
        self.rotations = list(rotations)

    def list_rotations(self, *, app_id: str | None = None) -> Sequence[Rotation]:
        return [r for r in self.rotations if app_id is None or r.app_id == app_id]


def tenant_with_app() -> tuple[Tenant, Application]:
    tenant = Tenant("00000000-0000-0000-0000-0000000000aa")
    app = tenant.create_app("orders", owned_by_rotator=False)
    return tenant, app


def promoted_secret(tenant: Tenant, app: Application, value: str = VALUE,
                    rotation_id: str = "r1") -> tuple[str, Rotation]:
    """A completed rotation whose new secret the consumer secret holds."""
    cred = tenant.add_secret(app.id, value, NOW + timedelta(days=90), f"rotator:{rotation_id}",
                             start=NOW - timedelta(days=1))
    tenant.vault.set("orders-secret", value, content_type="text/plain",
                     tags={"key_id": cred.key_id})
    rotation = make_rotation(app.app_id, state=RotationState.COMPLETED, rotation_id=rotation_id,
                             new_key_id=cred.key_id)
    return cred.key_id, rotation


def managed(app: Application, kind: CredentialKind | None = None) -> list[Managed]:
    return [Managed(app.app_id, "orders-secret", kind)]


def test_a_settled_secret_rotation_breaks_nothing() -> None:
    tenant, app = tenant_with_app()
    _, rotation = promoted_secret(tenant, app)
    assert check_tenant(tenant, Records(rotation), managed(app)) == []
    assert check_tenant(tenant, Records(rotation), managed(app, CredentialKind.SECRET)) == []


def test_an_app_without_a_valid_credential_of_its_kind() -> None:
    tenant, app = tenant_with_app()
    tenant.add_secret(app.id, VALUE, NOW - timedelta(days=1), start=NOW - timedelta(days=90))
    assert check_tenant(tenant, Records(), managed(app, CredentialKind.SECRET),
                        allow_no_consumer=True) == ["orders: no valid secret"]
    tenant.add_secret(app.id, OTHER, NOW + timedelta(days=9))
    assert check_tenant(tenant, Records(), managed(app, CredentialKind.CERTIFICATE),
                        allow_no_consumer=True) == ["orders: no valid certificate"]
    assert check_tenant(tenant, Records(), [Managed("no-such-app", "x")]) == [
        "no-such-app: the app is gone"]


def test_the_consumer_secret_must_hold_a_current_credential_of_the_app() -> None:
    tenant, app = tenant_with_app()
    key_id, rotation = promoted_secret(tenant, app)
    records = Records(rotation)
    # another value under the right key id
    tenant.vault.set("orders-secret", OTHER, tags={"key_id": key_id})
    (problem,) = check_tenant(tenant, records, managed(app))
    assert "holds another value" in problem and OTHER not in problem and VALUE not in problem
    # a key id the app does not have
    tenant.vault.set("orders-secret", VALUE, tags={"key_id": "gone"})
    assert check_tenant(tenant, records, managed(app)) == [
        "orders: the consumer secret orders-secret names secret gone, which the app does not have"]
    # a credential that has ended
    old = tenant.add_secret(app.id, OTHER, NOW - timedelta(hours=1), start=NOW - timedelta(days=9))
    tenant.vault.set("orders-secret", OTHER, tags={"key_id": old.key_id})
    assert check_tenant(tenant, records, managed(app)) == [
        f"orders: the consumer secret orders-secret holds secret {old.key_id}, which is not "
        "valid now"]
    # a disabled latest version
    tenant.vault.set("orders-secret", VALUE, tags={"key_id": key_id}, enabled=False)
    assert check_tenant(tenant, records, managed(app)) == [
        "orders: the consumer secret orders-secret: its latest version is disabled"]


def test_a_missing_consumer_secret_is_allowed_only_when_asked() -> None:
    tenant, app = tenant_with_app()
    tenant.add_secret(app.id, VALUE, NOW + timedelta(days=9))
    assert check_tenant(tenant, Records(), managed(app)) == [
        "orders: the consumer secret orders-secret does not exist"]
    assert check_tenant(tenant, Records(), managed(app), allow_no_consumer=True) == []


def test_orphans_superseded_credentials_and_rotations_in_flight() -> None:
    tenant, app = tenant_with_app()
    key_id, done = promoted_secret(tenant, app)
    staged = tenant.add_secret(app.id, OTHER, NOW + timedelta(days=90), "rotator:r2")
    in_flight = make_rotation(app.app_id, state=RotationState.STAGED, rotation_id="r2",
                              new_key_id=staged.key_id, old_key_id=key_id)
    # settled: a credential of a rotation that has not promoted it is an orphan
    (orphan,) = check_tenant(tenant, Records(done, in_flight), managed(app))
    assert orphan.startswith(f"orders: orphaned secret {staged.key_id} (rotator:r2")
    assert check_tenant(tenant, Records(done, in_flight), managed(app),
                        allow_in_flight=True) == []
    # ...but never one of a rotation that failed, or that nothing recorded
    failed = make_rotation(app.app_id, state=RotationState.FAILED, rotation_id="r2")
    assert len(check_tenant(tenant, Records(done, failed), managed(app),
                            allow_in_flight=True)) == 1
    assert len(check_tenant(tenant, Records(done), managed(app), allow_in_flight=True)) == 1
    # a completed rotation's superseded credential must be gone
    superseded = make_rotation(app.app_id, state=RotationState.COMPLETED, rotation_id="r0",
                               old_key_id=staged.key_id)
    problems = check_tenant(tenant, Records(done, in_flight, superseded), managed(app),
                            allow_in_flight=True)
    assert problems == [f"orders: superseded secret {staged.key_id} was not retired "
                        "(rotation r0 completed)"]
    # two rotations in flight at once
    other = make_rotation(app.app_id, state=RotationState.PENDING, rotation_id="r3")
    problems = check_tenant(tenant, Records(done, in_flight, other), managed(app),
                            allow_in_flight=True)
    assert problems == ["orders: 2 rotations in flight (r2, r3)"]


def test_secret_values_in_places_are_found_and_never_repeated() -> None:
    tenant, app = tenant_with_app()
    _, rotation = promoted_secret(tenant, app)
    tenant.vault.set("orders-secret-next", OTHER, enabled=False)  # the staged copy counts too
    places: dict[str, str | bytes] = {
        "the log": f"line one\n{VALUE}\n", "the database file r.db": b"\x00" + OTHER.encode(),
        "the report": "nothing here", "the output": "CANARY-1234",
    }
    problems = check_tenant(tenant, Records(rotation), managed(app), places=places,
                            known_secrets=["CANARY-"])
    assert problems == ["a secret value is in the log",
                        "a secret value is in the database file r.db",
                        "a secret value is in the output"]
    assert not any(VALUE in p or OTHER in p for p in problems)
    header = "-----BEGIN " "PRIVATE KEY-----"
    assert check_tenant(tenant, Records(rotation), managed(app), places={"x": header}) == [
        "a private key header is in x"]


@pytest.fixture(scope="module")
def material() -> certs.CertificateMaterial:
    return certs.generate("RSA2048", "CN=orders", NOW - timedelta(hours=1),
                          NOW + timedelta(days=90))


@pytest.mark.parametrize("content_type", [PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE])
def test_a_certificate_consumer_must_hold_the_registered_certificate_and_key(
    material: certs.CertificateMaterial, content_type: str
) -> None:
    tenant, app = tenant_with_app()
    cred = tenant.add_certificate(app.id, material.der, "rotator:c1")
    fmt = "pkcs12" if content_type == PKCS12_CONTENT_TYPE else "pem"
    bundle, _ = certs.bundle(material, fmt)
    tags = {"key_id": cred.key_id, "thumbprint": material.thumbprint}
    tenant.vault.set("orders-secret", bundle.reveal(), content_type=content_type, tags=tags)
    rotation = make_rotation(app.app_id, state=RotationState.PROMOTED, rotation_id="c1",
                             new_key_id=cred.key_id)
    records = Records(rotation)
    assert check_tenant(tenant, records, managed(app)) == []
    assert check_tenant(tenant, records, managed(app, CredentialKind.SECRET)) == [
        "orders: no valid secret"]
    # the key's slices are what a leak grep finds, in the stored form or on one line
    slices = private_key_slices(bundle.reveal(), content_type)
    assert len(slices) == 3
    for piece in slices:
        assert check_tenant(tenant, records, managed(app), places={"log": f"..{piece}.."}) == [
            "a secret value is in log"]
    # a wrong thumbprint tag; then another certificate under the registered key id
    tenant.vault.set("orders-secret", bundle.reveal(), content_type=content_type,
                     tags={**tags, "thumbprint": "00" * 20})
    assert check_tenant(tenant, records, managed(app)) == [
        "orders: the consumer secret orders-secret: its thumbprint tag does not name the "
        "certificate it holds"]
    stranger = certs.generate("RSA2048", "CN=someone",
                              NOW - timedelta(hours=1), NOW + timedelta(days=9))
    other_bundle, _ = certs.bundle(stranger, fmt)
    tenant.vault.set("orders-secret", other_bundle.reveal(), content_type=content_type,
                     tags={"key_id": cred.key_id, "thumbprint": stranger.thumbprint})
    assert check_tenant(tenant, records, managed(app)) == [
        f"orders: the consumer secret orders-secret names {cred.key_id} but holds certificate "
        f"{stranger.thumbprint}"]
    # a bundle that is no certificate at all
    tenant.vault.set("orders-secret", "not a bundle", content_type=content_type, tags=tags)
    (problem,) = check_tenant(tenant, records, managed(app))
    assert "not a certificate bundle" in problem
