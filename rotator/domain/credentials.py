"""What the directory holds: app registrations and their credentials, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CredentialKind(StrEnum):
    SECRET = "secret"
    CERTIFICATE = "certificate"


@dataclass(frozen=True, slots=True)
class Credential:
    """One password or key credential of an app registration (never its value)."""

    key_id: str
    kind: CredentialKind
    display_name: str | None
    start: datetime | None
    end: datetime | None
    hint: str | None = None
    # Certificates: SHA-1 thumbprint as upper-case hex (Graph's customKeyIdentifier).
    thumbprint: str | None = None

    def days_left(self, now: datetime) -> float | None:
        if self.end is None:
            return None
        return (self.end - now).total_seconds() / 86400.0

    def is_valid_at(self, now: datetime) -> bool:
        if self.end is not None and self.end <= now:
            return False
        return not (self.start is not None and self.start > now)


@dataclass(frozen=True, slots=True)
class AppRegistration:
    object_id: str
    app_id: str
    display_name: str
    credentials: tuple[Credential, ...] = field(default_factory=tuple)
    # Who may sign in (Graph's signInAudience); None when the listing did not say.
    sign_in_audience: str | None = None

    def credential(self, key_id: str) -> Credential | None:
        return next((c for c in self.credentials if c.key_id == key_id), None)

    def of_kind(self, kind: CredentialKind) -> tuple[Credential, ...]:
        return tuple(c for c in self.credentials if c.kind is kind)
