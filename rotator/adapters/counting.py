"""Counting decorators for the ports: every Graph, Key Vault and token request by outcome.

They wrap a port and report ``(service, operation, status)`` to a callback (the
daemon's metrics); the adapters stay unaware. Only names and status codes are
reported — never arguments, never values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential
from rotator.domain.secret_value import SecretValue
from rotator.ports import (
    CertificateStore,
    DeltaRound,
    Directory,
    DirectoryError,
    NewPassword,
    ScanItem,
    SecretStore,
    SecretStoreError,
    SelfSignedRequest,
    StoredCertificate,
    StoredSecret,
    TokenOutcome,
    TokenProbe,
)

# service ("graph", "keyvault", "token"), operation (method name), status ("ok", "429", ...)
RequestRecorder = Callable[[str, str, str], None]

OK = "ok"


def status_of(exc: BaseException) -> str:
    """A short, bounded label for a failed call: the HTTP status, else 'error'."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return str(status)
    if isinstance(exc, DirectoryError | SecretStoreError):
        return "unreachable" if exc.transient else "error"
    return "error"


class _Counting:
    _service: str

    def __init__(self, inner: Any, record: RequestRecorder) -> None:
        self._inner = inner
        self._record = record

    async def _count(self, operation: str, call: Callable[[], Any]) -> Any:
        try:
            result = await call()
        except Exception as exc:
            self._record(self._service, operation, status_of(exc))
            raise
        self._record(self._service, operation, self._result_status(result))
        return result

    def _result_status(self, result: Any) -> str:
        return OK


class CountingDirectory(_Counting):
    _service = "graph"

    def __init__(self, inner: Directory, record: RequestRecorder) -> None:
        super().__init__(inner, record)

    async def list_applications(self) -> AsyncIterator[ScanItem]:
        # One listing is counted once, when it ends (its pages are internal to the adapter).
        try:
            async for item in self._inner.list_applications():
                yield item
        except Exception as exc:
            self._record(self._service, "list_applications", status_of(exc))
            raise
        self._record(self._service, "list_applications", OK)

    async def list_service_principals(self) -> AsyncIterator[ScanItem]:
        try:
            async for item in self._inner.list_service_principals():
                yield item
        except Exception as exc:
            self._record(self._service, "list_service_principals", status_of(exc))
            raise
        self._record(self._service, "list_service_principals", OK)

    async def track_changes(self, resource: str) -> str:
        result: str = await self._count("track_changes",
                                        lambda: self._inner.track_changes(resource))
        return result

    async def list_changes(self, resource: str, link: str, into: DeltaRound
                           ) -> AsyncIterator[ScanItem]:
        try:
            async for item in self._inner.list_changes(resource, link, into):
                yield item
        except Exception as exc:
            self._record(self._service, "list_changes", status_of(exc))
            raise
        self._record(self._service, "list_changes", OK)

    def list_requests(self) -> int:
        count: int = self._inner.list_requests()
        return count

    async def get_application(self, app_id: str) -> AppRegistration | None:
        result: AppRegistration | None = await self._count(
            "get_application", lambda: self._inner.get_application(app_id)
        )
        return result

    async def federated_app_ids(self) -> set[str]:
        result: set[str] = await self._count(
            "federated_app_ids", lambda: self._inner.federated_app_ids())
        return result

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        result: CredentialRestrictions | None = await self._count(
            "get_credential_policy", lambda: self._inner.get_credential_policy(object_id)
        )
        return result

    async def list_credential_policies(self) -> TenantPolicies:
        result: TenantPolicies = await self._count(
            "list_credential_policies", lambda: self._inner.list_credential_policies()
        )
        return result

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        result: NewPassword = await self._count(
            "add_password", lambda: self._inner.add_password(object_id, display_name, end)
        )
        return result

    async def remove_password(self, object_id: str, key_id: str) -> None:
        await self._count("remove_password", lambda: self._inner.remove_password(object_id, key_id))

    async def add_key(
        self, object_id: str, certificate_der: bytes, display_name: str, proof: str
    ) -> Credential:
        result: Credential = await self._count(
            "add_key",
            lambda: self._inner.add_key(object_id, certificate_der, display_name, proof),
        )
        return result

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        await self._count("remove_key", lambda: self._inner.remove_key(object_id, key_id, proof))

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        result: Sequence[KeyEntry] = await self._count(
            "list_key_credentials", lambda: self._inner.list_key_credentials(object_id)
        )
        return result

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        await self._count(
            "set_key_credentials", lambda: self._inner.set_key_credentials(object_id, entries)
        )


class CountingSecretStore(_Counting):
    _service = "keyvault"

    def __init__(self, inner: SecretStore, record: RequestRecorder) -> None:
        super().__init__(inner, record)

    async def set_secret(
        self,
        name: str,
        value: SecretValue,
        *,
        content_type: str,
        tags: Mapping[str, str],
        expires_on: datetime | None = None,
        enabled: bool = True,
    ) -> StoredSecret:
        result: StoredSecret = await self._count(
            "set_secret",
            lambda: self._inner.set_secret(
                name, value, content_type=content_type, tags=tags, expires_on=expires_on,
                enabled=enabled,
            ),
        )
        return result

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        result: StoredSecret | None = await self._count(
            "get_secret", lambda: self._inner.get_secret(name, version)
        )
        return result

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        result: Sequence[StoredSecret] = await self._count(
            "list_versions", lambda: self._inner.list_versions(name)
        )
        return result

    async def disable_version(self, name: str, version: str) -> None:
        await self._count("disable_version", lambda: self._inner.disable_version(name, version))


class CountingCertificateStore(_Counting):
    """Key Vault certificate objects, counted under the same ``keyvault`` service."""

    _service = "keyvault"

    def __init__(self, inner: CertificateStore, record: RequestRecorder) -> None:
        super().__init__(inner, record)

    async def import_certificate(self, name: str, bundle: SecretValue, *, content_type: str,
                                 tags: Mapping[str, str], enabled: bool = True
                                 ) -> StoredCertificate:
        result: StoredCertificate = await self._count(
            "import_certificate",
            lambda: self._inner.import_certificate(name, bundle, content_type=content_type,
                                                   tags=tags, enabled=enabled))
        return result

    async def create_self_signed(self, name: str, request: SelfSignedRequest, *,
                                 tags: Mapping[str, str]) -> StoredCertificate:
        result: StoredCertificate = await self._count(
            "create_certificate",
            lambda: self._inner.create_self_signed(name, request, tags=tags))
        return result

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        result: StoredCertificate | None = await self._count(
            "get_certificate", lambda: self._inner.get_certificate(name, version))
        return result

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        result: Sequence[StoredCertificate] = await self._count(
            "list_certificate_versions", lambda: self._inner.list_versions(name))
        return result

    async def disable_version(self, name: str, version: str) -> None:
        await self._count("disable_certificate_version",
                          lambda: self._inner.disable_version(name, version))

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        result: StoredSecret | None = await self._count(
            "get_secret", lambda: self._inner.get_private(name, version))
        return result


class CountingTokenProbe(_Counting):
    """A refused token request is an answer, not a failure: its AADSTS code is the status
    (or the HTTP status when the endpoint itself was in trouble)."""

    _service = "token"

    def __init__(self, inner: TokenProbe, record: RequestRecorder) -> None:
        super().__init__(inner, record)

    def _result_status(self, result: Any) -> str:
        if isinstance(result, TokenOutcome) and not result.ok:
            if result.error_code:
                return result.error_code
            return str(result.status) if result.status else "refused"
        return OK

    async def try_secret(
        self, tenant_id: str, client_id: str, secret: SecretValue, scope: str
    ) -> TokenOutcome:
        outcome: TokenOutcome = await self._count(
            "try_secret", lambda: self._inner.try_secret(tenant_id, client_id, secret, scope)
        )
        return outcome

    async def try_certificate(
        self, tenant_id: str, client_id: str, pem_bundle: SecretValue, scope: str
    ) -> TokenOutcome:
        outcome: TokenOutcome = await self._count(
            "try_certificate",
            lambda: self._inner.try_certificate(tenant_id, client_id, pem_bundle, scope),
        )
        return outcome
