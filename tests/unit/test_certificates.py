"""Certificate helpers: pure rules (domain) and key material (certificate_material)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rotator import certificate_material as certs
from rotator.domain.certificates import (
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    PROOF_AUDIENCE,
    KeyEntry,
    check_patch,
    planned_list,
    proof_claims,
    thumbprint_of,
    x5t_of,
)
from rotator.domain.secret_value import SecretValue

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def material() -> certs.CertificateMaterial:
    return certs.generate("RSA2048", "CN=orders", NOW, NOW + timedelta(days=90))


def test_thumbprint_is_upper_hex_sha1_of_der(material: certs.CertificateMaterial) -> None:
    assert material.thumbprint == hashlib.sha1(material.der).hexdigest().upper()
    assert thumbprint_of(material.der) == material.thumbprint
    assert "=" not in x5t_of(material.der)


@pytest.mark.parametrize(("key_type", "cls", "size"), [
    ("RSA2048", rsa.RSAPrivateKey, 2048),
    ("EC_P256", ec.EllipticCurvePrivateKey, 256),
])
def test_generate_follows_key_type_subject_and_validity(key_type: str, cls: type, size: int
                                                        ) -> None:
    m = certs.generate(key_type, "CN=api,O=Example", NOW, NOW + timedelta(days=30))
    assert isinstance(m.private_key, cls) and m.private_key.key_size == size
    assert m.certificate.subject.rfc4514_string() == "CN=api,O=Example"
    assert m.not_before < NOW and m.not_after == NOW + timedelta(days=30)
    assert certs.valid_for(m, NOW) and not certs.valid_for(m, NOW + timedelta(days=31))


def test_a_bare_subject_becomes_a_common_name() -> None:
    m = certs.generate("RSA2048", "orders", NOW, NOW + timedelta(days=1))
    assert m.certificate.subject.rfc4514_string() == "CN=orders"


@pytest.mark.parametrize(("fmt", "content_type"), [("pem", PEM_CONTENT_TYPE),
                                                    ("pkcs12", PKCS12_CONTENT_TYPE)])
def test_bundles_round_trip(material: certs.CertificateMaterial, fmt: str, content_type: str
                            ) -> None:
    value, ct = certs.bundle(material, fmt)
    assert ct == content_type and isinstance(value, SecretValue)
    assert "BEGIN" not in repr(value) and "PRIVATE" not in str(value)
    back = certs.load(value, ct)
    assert back.thumbprint == material.thumbprint
    pem = certs.pem_for_probe(value, ct).reveal()
    assert pem.index("BEGIN PRIVATE KEY") < pem.index("BEGIN CERTIFICATE")


def test_material_repr_shows_only_the_thumbprint(material: certs.CertificateMaterial) -> None:
    assert repr(material) == f"CertificateMaterial(thumbprint={material.thumbprint})"


def test_unreadable_bundles_fail_without_quoting_them() -> None:
    junk = SecretValue("-----BEGIN " "PRIVATE KEY-----\nNOT-A-KEY-CANARY\n"
                       "-----END " "PRIVATE KEY-----")
    with pytest.raises(certs.CertificateError) as info:
        certs.load(junk, PEM_CONTENT_TYPE)
    assert "CANARY" not in str(info.value)
    with pytest.raises(certs.CertificateError):
        certs.load(SecretValue("bm90IGEgcGZ4"), PKCS12_CONTENT_TYPE)


def test_proof_follows_graphs_rules(material: certs.CertificateMaterial) -> None:
    token = certs.proof_jwt(material, "object-id", NOW)
    header = jwt.get_unverified_header(token)
    assert header["x5t"] == x5t_of(material.der) and header["alg"] == "RS256"
    claims = jwt.decode(token, material.certificate.public_key(),  # type: ignore[arg-type]
                        algorithms=["RS256"], audience=PROOF_AUDIENCE,
                        options={"verify_exp": False, "verify_nbf": False})
    assert claims["iss"] == "object-id"
    assert 0 < claims["exp"] - claims["nbf"] <= 600
    assert claims["nbf"] <= NOW.timestamp() < claims["exp"]
    assert proof_claims("x", NOW)["aud"] == "00000002-0000-0000-c000-000000000000"


def entry(key_id: str) -> KeyEntry:
    return KeyEntry(key_id=key_id, key="AAAA")


def test_planned_list_adds_and_removes_one_and_keeps_the_rest() -> None:
    current = [entry("A"), entry("b")]
    assert [e.key_id for e in planned_list(current, add=entry("c"))] == ["a", "b", "c"]
    assert [e.key_id for e in planned_list(current, remove="B")] == ["a"]
    assert [e.key_id for e in planned_list(current, add=entry("a"))] == ["a", "b"]


def test_check_patch_tells_applied_lost_and_appeared_apart() -> None:
    written = [entry("a"), entry("b"), entry("new")]
    ok = check_patch(written, [entry("a"), entry("b"), entry("new"), entry("x")], added="new")
    assert ok.applied and not ok.lost and ok.appeared == {"x"}
    overwritten = check_patch(written, [entry("a"), entry("b"), entry("y")], added="new")
    assert not overwritten.applied and not overwritten.lost and overwritten.appeared == {"y"}
    removed_by_other = check_patch(written, [entry("a"), entry("new")], added="new")
    assert removed_by_other.applied and removed_by_other.lost == {"b"}
    removal = check_patch([entry("a")], [entry("a")], removed="old")
    assert removal.applied


def test_validity_months_for_key_vault() -> None:
    from rotator.domain.certificates import validity_months

    assert validity_months(timedelta(days=90), capped=False) == 3
    assert validity_months(timedelta(days=180), capped=False) == 6
    assert validity_months(timedelta(days=10), capped=False) == 1
    # A tenant cap is never exceeded: rounded down by 31-day months, 0 when under a month.
    assert validity_months(timedelta(days=92), capped=True) == 2
    assert validity_months(timedelta(days=93), capped=True) == 3
    assert validity_months(timedelta(days=30), capped=True) == 0
