"""CertificateStore port over azure-keyvault-certificates (async CertificateClient).

The backing secret (the certificate with its private key) is read with the secrets
client, by the certificate's name and version, the way Microsoft.Identity.Web and the
CSI driver read it: a certificate object's PFX/PEM is a secret of the same name.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rotator.adapters.keyvault import KeyVaultSecretStore, translate_error
from rotator.domain.certificates import PEM_CONTENT_TYPE
from rotator.domain.secret_value import SecretValue
from rotator.ports import SecretStoreError, SelfSignedRequest, StoredCertificate, StoredSecret

if TYPE_CHECKING:
    from azure.keyvault.certificates.aio import CertificateClient

T = TypeVar("T")

# How often the create operation is polled. The SDK's default is 5 s; Key Vault makes a
# self-signed certificate in a second or two.
CREATE_POLL_SECONDS = 1.0


def _stored(cert: Any, content_type: str | None = None) -> StoredCertificate:
    props = cert.properties if hasattr(cert, "properties") else cert
    cer = getattr(cert, "cer", None)
    policy = getattr(cert, "policy", None)
    if content_type is None and policy is not None and policy.content_type is not None:
        content_type = str(policy.content_type)
    return StoredCertificate(
        name=props.name,
        version=props.version,
        enabled=bool(props.enabled),
        cer=bytes(cer) if cer else b"",
        content_type=content_type,
        tags=dict(props.tags or {}),
        created_on=props.created_on,
        expires_on=props.expires_on,
    )


def _content_type(name: str) -> Any:
    from azure.keyvault.certificates import CertificateContentType

    return CertificateContentType.pem if name == PEM_CONTENT_TYPE else CertificateContentType.pkcs12


class KeyVaultCertificateStore:
    def __init__(self, client: CertificateClient, secrets: KeyVaultSecretStore) -> None:
        self._client = client
        self._secrets = secrets

    async def _call(self, action: str, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except SecretStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a SecretStoreError
            raise translate_error(exc, action, plane="certificates") from None

    async def import_certificate(
        self, name: str, bundle: SecretValue, *, content_type: str, tags: Mapping[str, str],
        enabled: bool = True,
    ) -> StoredCertificate:
        from azure.keyvault.certificates import CertificatePolicy

        text = bundle.reveal()
        # The SDK base64-encodes the bytes it is given: PEM text, or the PFX itself.
        raw = text.encode("ascii") if content_type == PEM_CONTENT_TYPE else base64.b64decode(text)
        # The content type the backing secret serves is the policy's.
        policy = CertificatePolicy(content_type=_content_type(content_type))
        cert = await self._call(
            f"import certificate {name}",
            lambda: self._client.import_certificate(
                name, raw, enabled=enabled, tags=dict(tags), policy=policy),
        )
        return _stored(cert, content_type)

    async def create_self_signed(
        self, name: str, request: SelfSignedRequest, *, tags: Mapping[str, str]
    ) -> StoredCertificate:
        from azure.keyvault.certificates import (
            CertificateOperation,
            CertificatePolicy,
            KeyType,
            WellKnownIssuerNames,
        )

        policy = CertificatePolicy(
            issuer_name=WellKnownIssuerNames.self,
            subject=request.subject,
            exportable=True,
            key_type=KeyType.rsa,
            key_size=request.key_size,
            reuse_key=False,
            content_type=_content_type(request.content_type),
            validity_in_months=request.validity_months,
        )
        result = await self._call(
            f"create certificate {name}",
            lambda: self._client.create_certificate(
                name, policy, enabled=True, tags=dict(tags),
                _polling_interval=CREATE_POLL_SECONDS),
        )
        if isinstance(result, CertificateOperation):
            raise SecretStoreError(
                f"Key Vault did not finish creating certificate {name}: status "
                f"{result.status}: {result.status_details or result.error}",
                transient=True)
        return _stored(result, request.content_type)

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            if version:
                cert = await self._client.get_certificate_version(name, version)
            else:
                cert = await self._client.get_certificate(name)
        except ResourceNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, f"read certificate {name}", plane="certificates"
                                  ) from None
        # A version read carries no policy: the backing secret's content type is then
        # known when its value is read.
        return _stored(cert)

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        from azure.core.exceptions import ResourceNotFoundError

        async def collect() -> list[StoredCertificate]:
            out: list[StoredCertificate] = []
            try:
                async for props in self._client.list_properties_of_certificate_versions(name):
                    out.append(_stored(props))
            except ResourceNotFoundError:
                return []
            return out

        return await self._call(f"list versions of certificate {name}", collect)

    async def disable_version(self, name: str, version: str) -> None:
        await self._call(
            f"disable version {version} of certificate {name}",
            lambda: self._client.update_certificate_properties(name, version, enabled=False),
        )

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        return await self._secrets.get_secret(name, version)
