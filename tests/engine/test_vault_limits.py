"""What Key Vault cannot store stops a rotation before anything is created."""

from __future__ import annotations

import pytest

from rotator import certificate_material as certs
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState
from rotator.domain.vault_limits import vault_problems
from rotator.engine import create
from tests.support.world import World, rotate


def test_the_limits() -> None:
    fits = vault_problems(value_bytes=25 * 1024, content_type="c" * 255,
                          tags={str(i): "v" for i in range(15)}, what="x")
    assert fits == []
    problems = vault_problems(value_bytes=25 * 1024 + 1, content_type="c" * 256,
                              tags={str(i): "v" for i in range(16)}, what="x")
    assert len(problems) == 3


async def test_a_tag_set_the_vault_cannot_store_refuses_before_graph(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    plain = create.staging_tags
    monkeypatch.setattr(create, "staging_tags", lambda r, k: {
        **plain(r, k), **{f"extra{i}": "v" for i in range(11)}})
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "16 tags" in (result.last_error or "") and "created nothing" in (
        result.last_error or "")
    assert "add_password" not in world.directory.calls
    assert len(app.credentials) == 1
    assert world.vault.latest("orders-secret-next") is None


async def test_a_certificate_bundle_over_25_kb_refuses_before_graph(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.directory.add_cert_app("orders")
    world.manage(app, credential="certificate")
    real_bundle = certs.bundle

    def fat_bundle(material: certs.CertificateMaterial, fmt: str) -> tuple[SecretValue, str]:
        value, content_type = real_bundle(material, fmt)
        return SecretValue(value.reveal() + "\n" + "A" * 26_000), content_type

    monkeypatch.setattr(certs, "bundle", fat_bundle)
    before = len(world.directory.calls)
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "25 KB" in (result.last_error or "")
    writes = [c for c in world.directory.calls[before:]
              if c not in ("get", "get_credential_policy", "list_credential_policies")]
    assert writes == []
    assert len(app.credentials) == 1
    assert world.vault.latest("orders-secret-next") is None
