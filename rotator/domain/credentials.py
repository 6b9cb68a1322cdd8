"""What the directory holds: app registrations and their credentials, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CredentialKind(StrEnum):
    SECRET = "secret"
    CERTIFICATE = "certificate"


class CredentialSource(StrEnum):
    """Where a credential lives: on the app registration, or on a service principal
    (which authenticates for the app id too, unseen in the app registration blade)."""

    APPLICATION = "application"
    SERVICE_PRINCIPAL = "servicePrincipal"


# What a credential is for: a certificate's Graph ``usage`` (Sign: a SAML token-signing
# private key; Verify: a public key), or "secret" for a password credential.
USAGE_SECRET = "secret"
USAGE_SIGN = "Sign"
USAGE_VERIFY = "Verify"


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
    # Sign, Verify or secret (see USAGE_*); None when the listing did not say.
    usage: str | None = None

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
    source: CredentialSource = CredentialSource.APPLICATION
    # Service principals: their own object id (``object_id`` is the same value).
    sp_object_id: str | None = None
    # Mail (else user principal name) of each user owner; None when the listing did
    # not include owners, () when it said there are none.
    owners: tuple[str, ...] | None = None
    # Service principals: the tenant the app is registered in (appOwnerOrganizationId).
    home_tenant_id: str | None = None
    # SAML SSO service principals: the thumbprint of the certificate that signs tokens.
    preferred_signing_thumbprint: str | None = None
    saml: bool = False

    def credential(self, key_id: str) -> Credential | None:
        return next((c for c in self.credentials if c.key_id == key_id), None)

    def of_kind(self, kind: CredentialKind) -> tuple[Credential, ...]:
        return tuple(c for c in self.credentials if c.kind is kind)
