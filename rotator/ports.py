"""The edges of the core: what the engine needs from the outside world.

Adapters in ``rotator.adapters`` implement these against the real SDKs; the unit
tests implement them with in-memory fakes. Nothing here imports an SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential
from rotator.domain.secret_value import SecretValue


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


# ----------------------------------------------------------------- directory (Graph)


@dataclass(frozen=True, slots=True)
class ScanItem:
    """One entry of a directory listing: a parsed app, or why an entry could not be parsed."""

    app: AppRegistration | None
    error: str | None = None
    raw_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewPassword:
    key_id: str
    secret: SecretValue
    hint: str | None
    start: datetime | None
    end: datetime | None


class DirectoryError(Exception):
    """A Graph refusal, with the service's code and words, safe to show to people."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self._transient = transient

    @property
    def transient(self) -> bool:
        """Worth retrying later: throttling, outages, network, concurrent writes."""
        if self._transient is not None:
            return self._transient
        # 409 Directory_ConcurrencyViolation: another write to the same app was in flight.
        return self.status in (408, 409, 429, 500, 502, 503, 504) or (
            self.code is not None and "concurren" in self.code.lower()
        )


class Directory(Protocol):
    def list_applications(self) -> AsyncIterator[ScanItem]: ...

    async def get_application(self, app_id: str) -> AppRegistration | None:
        """By application (client) id; ``None`` when the tenant has no such app."""
        ...

    async def add_password(
        self, object_id: str, display_name: str, end: datetime
    ) -> NewPassword: ...

    async def remove_password(self, object_id: str, key_id: str) -> None:
        """Idempotent: removing a credential that is already gone is not an error."""
        ...

    async def add_key(
        self, object_id: str, certificate_der: bytes, display_name: str, proof: str
    ) -> Credential:
        """``addKey``: register a certificate, proven by a valid certificate of the app."""
        ...

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        """``removeKey``; idempotent like ``remove_password``."""
        ...

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        """The app's ``keyCredentials`` with each certificate (``key``), fresh from Graph."""
        ...

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        """``PATCH /applications/{id}`` of the whole ``keyCredentials`` list.

        Not safe on its own: a credential added by someone else since the list was
        read is dropped. Use ``rotator.engine.certificates.patch_key_credentials``.
        """
        ...


# ----------------------------------------------------------------- secret store (Key Vault)


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """Metadata of one secret version; ``value`` is only filled when it was read."""

    name: str
    version: str
    enabled: bool
    content_type: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    expires_on: datetime | None = None
    created_on: datetime | None = None
    value: SecretValue | None = None


class SecretStoreError(Exception):
    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self._transient = transient

    @property
    def transient(self) -> bool:
        if self._transient is not None:
            return self._transient
        return self.status in (408, 429, 500, 502, 503, 504)


class SecretStore(Protocol):
    async def set_secret(
        self,
        name: str,
        value: SecretValue,
        *,
        content_type: str,
        tags: Mapping[str, str],
        expires_on: datetime | None = None,
        enabled: bool = True,
    ) -> StoredSecret: ...

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        """Latest (or the given) version with its value; ``None`` if the secret does not exist."""
        ...

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        """All versions' metadata (no values); empty if the secret does not exist."""
        ...

    async def disable_version(self, name: str, version: str) -> None: ...


# ----------------------------------------------------------------- token probe (Entra)


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """The result of one client-credentials token request with a candidate credential."""

    ok: bool
    claims: Mapping[str, object] = field(default_factory=dict)
    error_code: str | None = None  # e.g. "AADSTS7000215"
    message: str | None = None
    status: int | None = None  # HTTP status of a refusal, when the endpoint answered


class TokenProbe(Protocol):
    async def try_secret(
        self, tenant_id: str, client_id: str, secret: SecretValue, scope: str
    ) -> TokenOutcome:
        """One token request with a fresh credential object (no cache across calls)."""
        ...

    async def try_certificate(
        self, tenant_id: str, client_id: str, pem_bundle: SecretValue, scope: str
    ) -> TokenOutcome:
        """The same with a client assertion signed by the key in ``pem_bundle``
        (private key and certificate, PEM)."""
        ...
