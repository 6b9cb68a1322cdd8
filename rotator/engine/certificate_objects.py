"""Key Vault certificate objects seen through the secret-store interface the steps use.

With ``key_vault_format = "certificate"`` the staging and consumer "secrets" are
certificate objects: writing a version imports the bundle (certificate and key) as a
new certificate version, reading one reads the certificate's tags and its backing
secret (same name, same version) for the key, disabling one disables the certificate
version. Everything else about
staging, promotion and rollback is the same as for secrets, which is the point: the
steps' crash recovery (find the staged version by its ``rotation_id`` tag, recognise a
promotion already written by the consumer's latest tags) carries over unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rotator.domain.secret_value import SecretValue
from rotator.ports import CertificateStore, StoredCertificate, StoredSecret


def _as_secret(cert: StoredCertificate, value: SecretValue | None = None,
               content_type: str | None = None) -> StoredSecret:
    return StoredSecret(
        name=cert.name, version=cert.version, enabled=cert.enabled,
        content_type=content_type or cert.content_type, tags=dict(cert.tags),
        expires_on=cert.expires_on, created_on=cert.created_on, value=value,
    )


class CertificateObjects:
    """A :class:`~rotator.ports.SecretStore` whose secrets are certificate objects."""

    def __init__(self, certificates: CertificateStore) -> None:
        self.certificates = certificates

    async def set_secret(
        self, name: str, value: SecretValue, *, content_type: str, tags: Mapping[str, str],
        expires_on: datetime | None = None, enabled: bool = True,
    ) -> StoredSecret:
        # A certificate's expiry is the certificate's own; ``expires_on`` has nothing to set.
        cert = await self.certificates.import_certificate(
            name, value, content_type=content_type, tags=tags, enabled=enabled)
        return _as_secret(cert)

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        cert = await self.certificates.get_certificate(name, version)
        if cert is None:
            return None
        private = await self.certificates.get_private(name, cert.version)
        if private is None:
            return _as_secret(cert)
        return _as_secret(cert, private.value, private.content_type)

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        return [_as_secret(c) for c in await self.certificates.list_versions(name)]

    async def disable_version(self, name: str, version: str) -> None:
        await self.certificates.disable_version(name, version)
