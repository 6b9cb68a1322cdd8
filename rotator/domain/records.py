"""What the record of scans, inventory and audit events holds, as plain values.

The store (``rotator.ports.Store``) returns and accepts these; they know nothing of
how they are kept. :class:`~rotator.domain.rotation.Rotation` is the other record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rotator.domain.credentials import (
    USAGE_SECRET,
    USAGE_SIGN,
    USAGE_VERIFY,
    AppRegistration,
    Credential,
    CredentialKind,
    CredentialSource,
)


class ScanStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # Some apps could not be read: the inventory is incomplete, never "all clear".
    PARTIAL = "partial"
    FAILED = "failed"
    # The service stopped before the scan read every app: like failed, nothing is
    # pruned and its inventory is not trusted, but nothing went wrong.
    INTERRUPTED = "interrupted"


class AuditOutcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One credential as the last scan saw it (metadata only)."""

    app_id: str
    key_id: str
    object_id: str
    app_display_name: str
    kind: CredentialKind
    display_name: str | None
    start_at: datetime | None
    end_at: datetime | None
    hint: str | None = None
    thumbprint: str | None = None
    managed: bool = False
    source: CredentialSource = CredentialSource.APPLICATION
    sp_object_id: str | None = None
    # Sign, Verify or secret; None for rows recorded before rotator read it.
    usage: str | None = None
    # SAML signing certificates: whether this is the one that signs tokens now.
    signing_active: bool | None = None
    # Mail or user principal name of each user owner; None when not known.
    owners: tuple[str, ...] | None = None
    # Service principals: the app is registered in another tenant (multi-tenant app).
    foreign_app: bool = False
    # App registrations: the app holds a federated identity credential (None: not known).
    federated: bool | None = None
    # Filled when read back from the store; ignored when writing.
    scan_run_id: str | None = None
    seen_at: datetime | None = None

    @property
    def on_service_principal(self) -> bool:
        return self.source is CredentialSource.SERVICE_PRINCIPAL

    @property
    def saml_signing(self) -> bool:
        """Part of a SAML token-signing certificate (its Sign or Verify key, or the
        password that protects its private key)."""
        return self.signing_active is not None

    @property
    def expiry_matters(self) -> bool:
        """Worth an expiry alert: any credential, but of a SAML certificate only the Sign
        key of the one that signs tokens now (its Verify key and password end with it, and
        a certificate not in use takes nothing down when it ends)."""
        if not self.saml_signing:
            return True
        return bool(self.signing_active) and self.kind is CredentialKind.CERTIFICATE and (
            self.usage == USAGE_SIGN)

    @classmethod
    def from_credential(
        cls, app: AppRegistration, credential: Credential, *, managed: bool,
        foreign_app: bool = False, federated: bool | None = None,
        scan_run_id: str | None = None, seen_at: datetime | None = None,
    ) -> InventoryRow:
        usage = credential.usage or (
            USAGE_SECRET if credential.kind is CredentialKind.SECRET else USAGE_VERIFY)
        signing: bool | None = None
        if app.saml and credential.thumbprint is not None and (
                credential.kind is CredentialKind.CERTIFICATE or usage != USAGE_SECRET):
            signing = credential.thumbprint == (app.preferred_signing_thumbprint or "").upper()
        return cls(
            app_id=app.app_id,
            key_id=credential.key_id,
            object_id=app.object_id,
            app_display_name=app.display_name,
            kind=credential.kind,
            display_name=credential.display_name,
            start_at=credential.start,
            end_at=credential.end,
            hint=credential.hint,
            thumbprint=credential.thumbprint,
            # Only app registration credentials are ever rotated.
            managed=managed and app.source is CredentialSource.APPLICATION,
            source=app.source,
            sp_object_id=app.sp_object_id,
            usage=usage,
            signing_active=signing,
            owners=app.owners,
            foreign_app=foreign_app,
            federated=federated if app.source is CredentialSource.APPLICATION else None,
            scan_run_id=scan_run_id,
            seen_at=seen_at,
        )

    def to_credential(self) -> Credential:
        return Credential(
            key_id=self.key_id,
            kind=self.kind,
            display_name=self.display_name,
            start=self.start_at,
            end=self.end_at,
            hint=self.hint,
            thumbprint=self.thumbprint,
        )

    def days_left(self, now: datetime) -> float | None:
        return self.to_credential().days_left(now)


@dataclass(frozen=True, slots=True)
class ScanError:
    raw_id: str | None
    error: str


@dataclass(frozen=True, slots=True)
class ScanRun:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: ScanStatus
    apps_seen: int
    credentials_seen: int
    error_count: int
    error: str | None
    # At most the first MAX_SCAN_ERRORS; ``error_count`` is the true total.
    errors: tuple[ScanError, ...] = ()
    # "full" (every app listed) or "delta" (only what changed since the last scan).
    mode: str = "full"
    graph_requests: int | None = None
    apps_changed: int | None = None

    @property
    def clean(self) -> bool:
        """True only for a finished scan that read every app without error."""
        return self.status is ScanStatus.SUCCEEDED and self.error_count == 0


@dataclass(frozen=True, slots=True)
class DeltaLinks:
    """Where the next incremental scan goes on from: one delta link per listing
    ("applications", "servicePrincipals"), and when the last full listing started."""

    links: Mapping[str, str]
    full_scan_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    step: str
    outcome: AuditOutcome
    message: str
    rotation_id: str | None = None
    app_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditNote:
    """An audit event to be written in the same transaction as a rotation change,
    so a crash can never leave a state change without the event that explains it."""

    step: str
    outcome: AuditOutcome
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
