"""The daemon counts Key Vault certificate calls like secret calls: names and statuses only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from rotator.adapters.counting import CountingCertificateStore
from rotator.domain.secret_value import SecretValue
from rotator.ports import (
    SecretStoreError,
    SelfSignedRequest,
    StoredCertificate,
    StoredSecret,
)

CANARY = "canary-private-key-material-7f3c"


class OneCertificate:
    """A certificate store holding one version; reads of others are throttled."""

    def __init__(self) -> None:
        self.cert = StoredCertificate("c", "v1", True, b"der", "application/x-pkcs12")

    async def import_certificate(self, name: str, bundle: SecretValue, *, content_type: str,
                                 tags: Mapping[str, str], enabled: bool = True
                                 ) -> StoredCertificate:
        return self.cert

    async def create_self_signed(self, name: str, request: SelfSignedRequest, *,
                                 tags: Mapping[str, str]) -> StoredCertificate:
        return self.cert

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        if version not in (None, "v1"):
            raise SecretStoreError("throttled", status=429)
        return self.cert

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        return [self.cert]

    async def disable_version(self, name: str, version: str) -> None:
        return None

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        return StoredSecret(name, version, True, "application/x-pem-file",
                            value=SecretValue(CANARY))


async def test_certificate_calls_are_counted_by_name_and_status() -> None:
    seen: list[tuple[str, str, str]] = []
    store = CountingCertificateStore(OneCertificate(), lambda *labels: seen.append(labels))
    await store.import_certificate("c", SecretValue(CANARY), content_type="x", tags={})
    await store.create_self_signed("c", SelfSignedRequest("CN=c", 2048, 3, "x"), tags={})
    await store.get_certificate("c")
    with pytest.raises(SecretStoreError):
        await store.get_certificate("c", "v2")
    await store.list_versions("c")
    await store.disable_version("c", "v1")
    private = await store.get_private("c", "v1")
    assert private is not None and private.value is not None
    assert seen == [
        ("keyvault", "import_certificate", "ok"), ("keyvault", "create_certificate", "ok"),
        ("keyvault", "get_certificate", "ok"), ("keyvault", "get_certificate", "429"),
        ("keyvault", "list_certificate_versions", "ok"),
        ("keyvault", "disable_certificate_version", "ok"), ("keyvault", "get_secret", "ok"),
    ]
    assert all(CANARY not in label for labels in seen for label in labels)
