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

from rotator.domain.credentials import AppRegistration, Credential, CredentialKind


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
    # Filled when read back from the store; ignored when writing.
    scan_run_id: str | None = None
    seen_at: datetime | None = None

    @classmethod
    def from_credential(
        cls, app: AppRegistration, credential: Credential, *, managed: bool
    ) -> InventoryRow:
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
            managed=managed,
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

    @property
    def clean(self) -> bool:
        """True only for a finished scan that read every app without error."""
        return self.status is ScanStatus.SUCCEEDED and self.error_count == 0


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
