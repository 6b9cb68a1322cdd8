"""The rest of the estate beside app registrations: users, owners, the credentials of
service principals themselves (SAML signing certificates among them), service principals
of apps registered in other tenants, and federated identity credentials.

A mixin of :class:`rotator.emulator.tenant.Tenant`, kept apart so the tenant module
stays about app registrations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from rotator.emulator.errors import GraphError, graph_not_found
from rotator.emulator.model import (
    Application,
    FederatedIdentityCredential,
    KeyCredential,
    PasswordCredential,
    ServicePrincipal,
    User,
    Visibility,
    next_change,
    utcnow,
)

# What Graph gives a service principal's addPassword without endDateTime.
SP_DEFAULT_LIFETIME = timedelta(days=730)


class ForeignApp:
    """A multi-tenant app registered in another tenant: this tenant may hold its
    service principal, never its registration."""

    __slots__ = ("app_id", "display_name", "owner_tenant_id")

    def __init__(self, app_id: str, display_name: str, owner_tenant_id: str) -> None:
        self.app_id = app_id
        self.display_name = display_name
        self.owner_tenant_id = owner_tenant_id


class EstateMixin:
    # Provided by Tenant.
    _lock: threading.RLock
    _sps: dict[str, ServicePrincipal]
    _sps_by_app_id: dict[str, ServicePrincipal]
    tenant_id: str

    def new_uuid(self) -> str:  # pragma: no cover - Tenant's
        raise NotImplementedError

    def _visibility(self) -> Visibility:  # pragma: no cover - Tenant's
        raise NotImplementedError

    def app_by_app_id(self, app_id: str) -> Application | None:  # pragma: no cover
        raise NotImplementedError

    def find_app(self, *, app_id: str | None = None,
                 object_id: str | None = None) -> Application:  # pragma: no cover
        raise NotImplementedError

    def _init_estate(self) -> None:
        self._users: dict[str, User] = {}
        self._sp_order: list[str] = []
        # Deleted service principals by object id, with the change tick of the deletion.
        self.removed_sps: dict[str, int] = {}
        self.foreign_apps: dict[str, ForeignApp] = {}

    # ------------------------------------------------------------------ users

    def create_user(self, display_name: str, upn: str, mail: str | None) -> User:
        with self._lock:
            user = User(self.new_uuid(), display_name, upn, mail)
            self._users[user.id] = user
            return user

    def user(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def users(self) -> list[User]:
        with self._lock:
            return list(self._users.values())

    def owner_objects(self, owner_ids: Iterable[str]) -> list[User | ServicePrincipal]:
        """The directory objects behind a set of owner ids, users first, in a stable order."""
        with self._lock:
            found: list[User | ServicePrincipal] = []
            for oid in sorted(owner_ids):
                obj: User | ServicePrincipal | None = self._users.get(oid) or self._sps.get(oid)
                if obj is not None:
                    found.append(obj)
            found.sort(key=lambda o: not isinstance(o, User))
            return found

    def _check_owner(self, owner_id: str) -> None:
        if owner_id not in self._users and owner_id not in self._sps:
            raise graph_not_found(owner_id)

    def add_sp_owner(self, sp_id: str, owner_id: str) -> None:
        with self._lock:
            sp = self.find_sp(sp_id)
            self._check_owner(owner_id)
            sp.owners.add(owner_id)

    # ------------------------------------------------------------------ service principals

    def find_sp(self, sp_id: str) -> ServicePrincipal:
        with self._lock:
            sp = self._sps.get(sp_id.lower())
            if sp is None:
                raise graph_not_found(sp_id)
            return sp

    def _register_sp(self, sp: ServicePrincipal) -> ServicePrincipal:
        """Listing order is creation order, so skip tokens stay valid."""
        self._sps[sp.id] = sp
        self._sps_by_app_id[sp.app_id] = sp
        self._sp_order.append(sp.id)
        return sp

    def _unregister_sp(self, sp: ServicePrincipal) -> None:
        self._sps.pop(sp.id, None)
        self._sps_by_app_id.pop(sp.app_id, None)
        # Delta queries report the deletion once: the tick it happened at.
        self.removed_sps[sp.id] = next_change()

    def sp_page(
        self, start: int, top: int, predicate: Callable[[ServicePrincipal], bool] | None = None
    ) -> tuple[list[ServicePrincipal], int | None]:
        out: list[ServicePrincipal] = []
        with self._lock:
            order, sps = self._sp_order, self._sps
            index = max(start, 0)
            while index < len(order):
                sp = sps.get(order[index])
                index += 1
                if sp is None or (predicate is not None and not predicate(sp)):
                    continue
                if len(out) == top:
                    return out, index - 1
                out.append(sp)
            return out, None

    def register_foreign_app(self, display_name: str, owner_tenant_id: str) -> ForeignApp:
        with self._lock:
            foreign = ForeignApp(self.new_uuid(), display_name, owner_tenant_id)
            self.foreign_apps[foreign.app_id] = foreign
            return foreign

    def create_foreign_sp(self, app_id: str) -> ServicePrincipal:
        """A service principal of a multi-tenant app registered in another tenant."""
        with self._lock:
            foreign = self.foreign_apps[app_id]
            return self._register_sp(ServicePrincipal(
                self.new_uuid(), app_id, foreign.display_name, utcnow(), [app_id],
                app_owner_organization_id=foreign.owner_tenant_id,
                sign_in_audience="AzureADMultipleOrgs",
            ))

    def sp_add_password(
        self, sp_id: str, display_name: str | None, end: datetime | None,
        start: datetime | None = None, *, value: str | None = None,
    ) -> PasswordCredential:
        from rotator.emulator.tenant import make_secret_text

        with self._lock:
            sp = self.find_sp(sp_id)
            start = start or utcnow()
            cred = PasswordCredential(
                key_id=self.new_uuid(),
                display_name=display_name,
                secret_text=value or make_secret_text(),
                start=start,
                end=end or start + SP_DEFAULT_LIFETIME,
                # Seeded values are known everywhere; Graph writes propagate like the app's.
                visible_at=() if value else self._visibility(),
            )
            sp.password_credentials.append(cred)
            sp.changed()
            return cred

    def sp_remove_password(self, sp_id: str, key_id: str) -> None:
        with self._lock:
            sp = self.find_sp(sp_id)
            kept = [c for c in sp.password_credentials if c.key_id != key_id.lower()]
            if len(kept) == len(sp.password_credentials):
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"No password credential found with keyId '{key_id}'.")
            sp.password_credentials = kept
            sp.changed()

    def sp_add_key(self, sp_id: str, cred: KeyCredential) -> KeyCredential:
        with self._lock:
            sp = self.find_sp(sp_id)
            sp.key_credentials.append(cred)
            sp.changed()
            return cred

    def add_token_signing_certificate(
        self, sp_id: str, der: bytes, display_name: str, *, prefer: bool = True
    ) -> tuple[KeyCredential, KeyCredential, PasswordCredential]:
        """What ``addTokenSigningCertificate`` leaves on a SAML service principal: a Sign
        key (the private part), a Verify key (the public part) and the password that
        protects the private key, all three with the certificate's thumbprint as
        ``customKeyIdentifier``."""
        from rotator.emulator.pki import cert_thumbprints
        from rotator.emulator.tenant import make_secret_text

        with self._lock:
            sp = self.find_sp(sp_id)
            sha1, sha256 = cert_thumbprints(der)
            from cryptography import x509

            cert = x509.load_der_x509_certificate(der)
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
            thumb = sha1.hex().upper()
            sign, verify = (
                KeyCredential(self.new_uuid(), display_name, start, end, sha1, sha256, der,
                              custom_key_identifier=thumb, usage=usage)
                for usage in ("Sign", "Verify")
            )
            password = PasswordCredential(self.new_uuid(), display_name, make_secret_text(),
                                          start, end, custom_key_identifier=thumb)
            sp.key_credentials += [sign, verify]
            sp.password_credentials.append(password)
            sp.preferred_single_sign_on_mode = "saml"
            if prefer or sp.preferred_token_signing_key_thumbprint is None:
                sp.preferred_token_signing_key_thumbprint = thumb
            sp.changed()
            return sign, verify, password

    # ------------------------------------------------------------------ sign-in

    def token_client(self, client_id: str) -> Application | None:
        """What the token endpoint checks a client's credentials against: the app
        registration's credentials and those of its service principal (both
        authenticate for the app id), or the service principal's alone for an app
        registered in another tenant. SAML signing keys and their passwords are not
        client credentials and are left out."""
        with self._lock:
            app = self.app_by_app_id(client_id)
            sp = self._sps_by_app_id.get(client_id)
            if sp is None or not (sp.password_credentials or sp.key_credentials):
                return app
            passwords = [p for p in sp.password_credentials if p.custom_key_identifier is None]
            keys = [k for k in sp.key_credentials if k.usage == "Verify"
                    and k.custom_key_identifier is None]
            if app is not None:
                return replace(app, password_credentials=[*app.password_credentials, *passwords],
                               key_credentials=[*app.key_credentials, *keys], _json=None,
                               history=[])
            if client_id not in self.foreign_apps:
                return None
            return Application(id=sp.id, app_id=sp.app_id, display_name=sp.display_name,
                               created=sp.created, password_credentials=passwords,
                               key_credentials=keys)

    # ------------------------------------------------------------------ federated credentials

    def add_federated_credential(
        self, object_id: str, name: str, issuer: str, subject: str,
        audiences: Iterable[str] = ("api://AzureADTokenExchange",),
        description: str | None = None,
    ) -> FederatedIdentityCredential:
        with self._lock:
            app = self.find_app(object_id=object_id)
            if any(f.name == name for f in app.federated_identity_credentials):
                raise GraphError(409, "Request_BadRequest",
                                 f"FederatedIdentityCredential with name {name} already exists.")
            fic = FederatedIdentityCredential(self.new_uuid(), name, issuer, subject,
                                              tuple(audiences), description)
            app.federated_identity_credentials.append(fic)
            return fic

    def federated_credentials(self, object_id: str) -> list[FederatedIdentityCredential]:
        with self._lock:
            return list(self.find_app(object_id=object_id).federated_identity_credentials)
