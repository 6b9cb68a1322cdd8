"""The directory objects the emulated tenant holds, and their Graph JSON shapes."""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from rotator.emulator.pki import placeholder_cert_der

JsonDict = dict[str, Any]

# One clock of directory changes for the whole emulator: every write to an application or
# a service principal takes the next tick, which is what delta queries track.
_CHANGES = itertools.count(1)


def next_change() -> int:
    return next(_CHANGES)


def iso(dt: datetime | None) -> str | None:
    """Graph's timestamp format: UTC, ``Z``, seven fractional digits when there is a fraction."""
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}0Z"
    return f"{dt:%Y-%m-%dT%H:%M:%S}Z"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class AppRole:
    id: str
    value: str
    display_name: str
    description: str = ""
    allowed_member_types: tuple[str, ...] = ("Application",)
    is_enabled: bool = True

    def to_json(self) -> JsonDict:
        return {
            "allowedMemberTypes": list(self.allowed_member_types),
            "description": self.description,
            "displayName": self.display_name,
            "id": self.id,
            "isEnabled": self.is_enabled,
            "origin": "Application",
            "value": self.value,
        }


# Per-replica monotonic times at which a credential becomes known; empty means "everywhere".
Visibility = tuple[float, ...]


def known_to(visible_at: Visibility, replica: int) -> bool:
    return not visible_at or time.monotonic() >= visible_at[replica % len(visible_at)]


@dataclass(eq=False, slots=True)
class PasswordCredential:
    key_id: str
    display_name: str | None
    secret_text: str
    start: datetime
    end: datetime
    visible_at: Visibility = ()
    # Set on the password of a SAML token-signing certificate (it protects the private key).
    custom_key_identifier: str | None = None

    @property
    def hint(self) -> str:
        return self.secret_text[:3]

    def to_json(self, *, with_secret: bool = False) -> JsonDict:
        return {
            "customKeyIdentifier": self.custom_key_identifier,
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": self.secret_text if with_secret else None,
            "startDateTime": iso(self.start),
        }

    def __repr__(self) -> str:  # never show the secret in tracebacks or logs
        return f"PasswordCredential(key_id={self.key_id!r}, hint={self.hint!r}, end={self.end})"


@dataclass(eq=False)
class KeyCredential:
    key_id: str
    display_name: str | None
    start: datetime
    end: datetime
    # SHA-1 of the DER: what an assertion's x5t names. Random for seeded placeholders.
    thumbprint: bytes
    sha256: bytes | None = None
    der: bytes | None = None
    custom_key_identifier: str | None = None
    type: str = "AsymmetricX509Cert"
    usage: str = "Verify"
    visible_at: Visibility = ()

    @cached_property
    def public_key(self) -> PublicKeyTypes | None:
        if self.der is None:
            return None
        return x509.load_der_x509_certificate(self.der).public_key()

    def key_der(self) -> bytes:
        if self.der is None:
            # Seeded credentials carry no real certificate; make one only when it is asked for.
            self.der = placeholder_cert_der(self.display_name or "seeded", self.start, self.end)
        return self.der

    def to_json(self, *, with_key: bool = False) -> JsonDict:
        return {
            "customKeyIdentifier": self.custom_key_identifier or self.thumbprint.hex().upper(),
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "key": base64.b64encode(self.key_der()).decode() if with_key else None,
            "keyId": self.key_id,
            "startDateTime": iso(self.start),
            "type": self.type,
            "usage": self.usage,
        }


# What a read replica serves of an app: display name, audience, secrets, certificates.
Snapshot = tuple[str, str, tuple[PasswordCredential, ...], tuple[KeyCredential, ...]]


@dataclass(eq=False)
class Application:
    id: str
    app_id: str
    display_name: str
    created: datetime
    identifier_uris: list[str] = field(default_factory=list)
    app_roles: list[AppRole] = field(default_factory=list)
    password_credentials: list[PasswordCredential] = field(default_factory=list)
    key_credentials: list[KeyCredential] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)  # user or service principal object ids
    sign_in_audience: str = "AzureADMyOrg"
    federated_identity_credentials: list[FederatedIdentityCredential] = field(
        default_factory=list)
    # api.requestedAccessTokenVersion: the shape of the tokens issued for this app as a
    # resource. None (what the portal leaves) and 1 mean v1 tokens; 2 means v2.
    access_token_version: int | None = None
    deleted: bool = False
    # The tick of the last change (see next_change): delta queries report it once.
    change_seq: int = field(default_factory=next_change, repr=False)
    _json: JsonDict | None = field(default=None, repr=False)
    # Writes the read replicas are still learning: (per-replica times, the app after it).
    history: list[tuple[Visibility, Snapshot]] = field(default_factory=list, repr=False)

    def changed(self) -> None:
        self._json = None
        self.change_seq = next_change()

    def to_json(self) -> JsonDict:
        """The full object; cached because large tenants are paged over and over."""
        if self._json is None:
            self._json = {
                "id": self.id,
                "deletedDateTime": None,
                "appId": self.app_id,
                "createdDateTime": iso(self.created),
                "description": None,
                "displayName": self.display_name,
                "identifierUris": list(self.identifier_uris),
                "notes": None,
                "publisherDomain": "emulated.onmicrosoft.com",
                "signInAudience": self.sign_in_audience,
                "tags": [],
                "api": {
                    "acceptMappedClaims": None,
                    "knownClientApplications": [],
                    "oauth2PermissionScopes": [],
                    "preAuthorizedApplications": [],
                    "requestedAccessTokenVersion": self.access_token_version,
                },
                "appRoles": [r.to_json() for r in self.app_roles],
                "keyCredentials": [k.to_json() for k in self.key_credentials],
                "passwordCredentials": [p.to_json() for p in self.password_credentials],
                "requiredResourceAccess": [],
            }
        return self._json


def snapshot(app: Application) -> Snapshot:
    return (
        app.display_name,
        app.sign_in_audience,
        tuple(app.password_credentials),
        tuple(app.key_credentials),
    )


def view_of(app: Application, snap: Snapshot) -> Application:
    """A read-only copy of ``app`` as it was in ``snap``."""
    return replace(
        app,
        display_name=snap[0],
        sign_in_audience=snap[1],
        password_credentials=list(snap[2]),
        key_credentials=list(snap[3]),
        _json=None,
        history=[],
    )


@dataclass(eq=False)
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    created: datetime
    service_principal_names: list[str] = field(default_factory=list)
    # Only first-party resources (Graph, Key Vault) keep roles here; tenant apps use the app's.
    own_app_roles: list[AppRole] = field(default_factory=list)
    # Credentials of the service principal itself: they authenticate for the app id too,
    # and the app registration does not show them.
    password_credentials: list[PasswordCredential] = field(default_factory=list)
    key_credentials: list[KeyCredential] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)  # user or service principal object ids
    # The tenant the app is registered in: this one, or another for multi-tenant apps.
    app_owner_organization_id: str | None = None
    sign_in_audience: str = "AzureADMyOrg"
    preferred_single_sign_on_mode: str | None = None  # "saml" for SAML SSO apps
    preferred_token_signing_key_thumbprint: str | None = None
    change_seq: int = field(default_factory=next_change, repr=False)

    def changed(self) -> None:
        self.change_seq = next_change()

    def to_json(self, app_roles: list[AppRole]) -> JsonDict:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "accountEnabled": True,
            "appId": self.app_id,
            "appDisplayName": self.display_name,
            "appOwnerOrganizationId": self.app_owner_organization_id,
            "displayName": self.display_name,
            "preferredSingleSignOnMode": self.preferred_single_sign_on_mode,
            "preferredTokenSigningKeyThumbprint": self.preferred_token_signing_key_thumbprint,
            "servicePrincipalNames": list(self.service_principal_names),
            "servicePrincipalType": "Application",
            "signInAudience": self.sign_in_audience,
            "appRoles": [r.to_json() for r in app_roles],
            "keyCredentials": [k.to_json() for k in self.key_credentials],
            "passwordCredentials": [p.to_json() for p in self.password_credentials],
        }


@dataclass(eq=False, slots=True)
class User:
    id: str
    display_name: str
    user_principal_name: str
    mail: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "businessPhones": [],
            "givenName": None,
            "surname": None,
            "jobTitle": None,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
        }


@dataclass(eq=False, slots=True)
class FederatedIdentityCredential:
    id: str
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = ("api://AzureADTokenExchange",)
    description: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "id": self.id,
            "name": self.name,
            "issuer": self.issuer,
            "subject": self.subject,
            "audiences": list(self.audiences),
            "description": self.description,
        }


@dataclass(eq=False, slots=True)
class AppRoleAssignment:
    id: str
    principal_id: str
    resource_id: str
    app_role_id: str
    created: datetime
    # False models "requested in the app's API permissions but never admin-consented".
    consented: bool = True
    principal_display_name: str = ""
    resource_display_name: str = ""

    def to_json(self) -> JsonDict:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "appRoleId": self.app_role_id,
            "createdDateTime": iso(self.created),
            "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": self.resource_display_name,
            "resourceId": self.resource_id,
        }
