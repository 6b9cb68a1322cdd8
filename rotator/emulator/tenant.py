"""The emulated tenant's state: applications, service principals, consent, policy, one vault.

All public methods take the tenant lock, so tests may poke at state while the server runs.
Graph-facing operations raise ``GraphError`` with the codes the real service uses.
"""

from __future__ import annotations

import base64
import hmac
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from cryptography import x509

from rotator.emulator.certstore import CertificateStore
from rotator.emulator.errors import GraphError, graph_not_found
from rotator.emulator.estate import EstateMixin
from rotator.emulator.model import (
    Application,
    AppRole,
    AppRoleAssignment,
    KeyCredential,
    PasswordCredential,
    ServicePrincipal,
    Snapshot,
    Visibility,
    known_to,
    snapshot,
    utcnow,
    view_of,
)
from rotator.emulator.pki import cert_thumbprints
from rotator.emulator.policies import (
    Policy,
    Restriction,
    Restrictions,
    check_key,
    check_password,
    new_default_policy,
    parse_restrictions,
)
from rotator.emulator.timeparse import parse_iso
from rotator.emulator.vaultstore import VaultStore

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
VAULT_RESOURCE = "https://vault.azure.net"
# Azure Database for PostgreSQL's Entra logins ("Azure OSSRDBMS Database").
OSSRDBMS_APP_ID = "123cd850-d9df-40bd-94d5-c9f07b7fa203"
OSSRDBMS_RESOURCE = "https://ossrdbms-aad.database.windows.net"
# Real Graph app role ids, so role assignments look like a real tenant's.
GRAPH_ROLES: dict[str, str] = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Policy.Read.All": "246dd0d5-5bd0-4def-940b-0421030a5b68",
    "Policy.ReadWrite.ApplicationConfiguration": "be74164b-cff1-491c-8741-e671cb536e13",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "User.ReadWrite.All": "741f803b-c850-494e-b5df-cde7c675a1ca",
}
# signInAudience values that include personal Microsoft accounts: such apps hold at most
# MSA_PASSWORD_LIMIT password credentials.
PERSONAL_AUDIENCES = frozenset({"AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"})
SIGN_IN_AUDIENCES = frozenset(
    {"AzureADMyOrg", "AzureADMultipleOrgs", *PERSONAL_AUDIENCES}
)
MSA_PASSWORD_LIMIT = 2
DEFAULT_LIFETIME = timedelta(days=730)  # Graph's default when endDateTime is left out
SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"


def make_secret_text(rng: random.Random | None = None) -> str:
    """40 characters shaped like Entra's: a 3-character hint, a version marker, then noise."""
    source = rng or random.SystemRandom()
    head = "".join(source.choices(SECRET_ALPHABET[:62], k=3))
    # base64url of random bits is fast and uses the same alphabet real secrets draw from.
    noise = base64.urlsafe_b64encode(source.getrandbits(208).to_bytes(26, "big")).decode()
    return head + "8Q~" + noise[:34]


class Tenant(EstateMixin):
    def __init__(
        self,
        tenant_id: str,
        *,
        propagation_seconds: float = 0.0,
        removal_propagation_seconds: float | None = None,
        graph_consistency_seconds: float = 0.0,
        replicas: int = 4,
        seed: int = 0,
        domain: str = "emulated.onmicrosoft.com",
    ) -> None:
        self.tenant_id = tenant_id
        self.domain = domain
        self.propagation_seconds = propagation_seconds
        # How long a removed credential still gets tokens on some replicas; None follows
        # propagation_seconds.
        self.removal_propagation_seconds = removal_propagation_seconds
        self.replicas = replicas
        # Directory reads are served by replicas that learn each write after their own
        # random delay in [0, graph_consistency_seconds].
        self.graph_consistency_seconds = graph_consistency_seconds
        # Removed credentials and, per replica, the monotonic time it forgets them.
        self._ghosts: dict[str, list[tuple[PasswordCredential | KeyCredential, Visibility]]] = {}
        self.lifetime_max_days: int | None = None
        # Delta queries: objects a page, how long a token lives (seven days for directory
        # objects), and the change-tracking state tokens belong to (a reset expires them all).
        self.delta_page_size = 200
        self.delta_token_lifetime_seconds = 7 * 86400.0
        self.delta_generation = 1
        self.vault = VaultStore()
        self.certificates = CertificateStore(self.vault)
        self.rotator_app_id = ""
        self.rotator_secret = ""
        # The tenant administrator: Application.ReadWrite.All and
        # Policy.ReadWrite.ApplicationConfiguration, for tests that set up a tenant.
        self.admin_app_id = ""
        self.admin_secret = ""
        self.default_policy: Policy = new_default_policy()
        self._policies: dict[str, Policy] = {}
        self._app_policy: dict[str, str] = {}  # application object id -> policy id
        # Secrets of the walkthrough client apps, by display name (tests log in with them).
        self.scenario_secrets: dict[str, str] = {}
        self._lock = threading.RLock()
        # Replica choice and ids repeat per seed; secret values come from SystemRandom.
        self._rng = random.Random(seed ^ 0x5EED)  # noqa: S311
        self._uuid_rng = random.Random(seed ^ 0x0B1)  # noqa: S311
        self._apps: dict[str, Application] = {}
        self._apps_by_app_id: dict[str, Application] = {}
        # Creation order; positions never move, so skip tokens stay valid across deletes.
        self._order: list[str] = []
        self._sps: dict[str, ServicePrincipal] = {}
        self._sps_by_app_id: dict[str, ServicePrincipal] = {}
        self._assignments: list[AppRoleAssignment] = []
        self._vault_access: set[str] = set()
        self._init_estate()
        self.graph_sp = self._first_party_sp(
            GRAPH_APP_ID,
            "Microsoft Graph",
            [GRAPH_RESOURCE, "https://graph.microsoft.com/", GRAPH_APP_ID],
            [AppRole(rid, value, value) for value, rid in GRAPH_ROLES.items()],
        )
        self.vault_sp = self._first_party_sp(
            VAULT_APP_ID, "Azure Key Vault", [VAULT_RESOURCE, VAULT_APP_ID], []
        )
        self.ossrdbms_sp = self._first_party_sp(
            OSSRDBMS_APP_ID, "Azure OSSRDBMS Database", [OSSRDBMS_RESOURCE, OSSRDBMS_APP_ID], []
        )

    # ------------------------------------------------------------------ ids and time

    def new_uuid(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._uuid_rng.getrandbits(128), version=4))

    def _visibility(self) -> Visibility:
        if self.propagation_seconds <= 0:
            return ()
        now = time.monotonic()
        return tuple(
            now + self._rng.uniform(0, self.propagation_seconds) for _ in range(self.replicas)
        )

    def _forgetting(self) -> Visibility:
        bound = self.removal_propagation_seconds
        if bound is None:
            bound = self.propagation_seconds
        if bound <= 0:
            return ()
        now = time.monotonic()
        return tuple(now + self._rng.uniform(0, bound) for _ in range(self.replicas))

    def _bury(self, app: Application, creds: Iterable[PasswordCredential | KeyCredential]
              ) -> None:
        """Removed credentials linger on the token replicas that have not heard yet."""
        gone = self._forgetting()
        if not gone:
            return
        now = time.monotonic()
        kept = [(c, g) for c, g in self._ghosts.get(app.id, []) if max(g) > now]
        kept += [(c, gone) for c in creds]
        self._ghosts[app.id] = kept

    def lingering(self, app: Application, replica: int
                  ) -> list[PasswordCredential | KeyCredential]:
        """Removed credentials the given token replica still accepts."""
        now = time.monotonic()
        with self._lock:
            return [c for c, gone in self._ghosts.get(app.id, [])
                    if now < gone[replica % len(gone)]]

    def _read_lag(self) -> Visibility:
        bound = self.graph_consistency_seconds
        if bound <= 0:
            return ()
        now = time.monotonic()
        return tuple(now + self._rng.uniform(0, bound) for _ in range(self.replicas))

    def _written(self, app: Application, before: Snapshot | None) -> None:
        """Record a directory write for the read replicas (``before``: the app as it was)."""
        app.changed()
        lag = self._read_lag()
        if not lag and not app.history:
            return
        if not app.history and before is not None:
            app.history.append(((), before))
        app.history.append((lag, snapshot(app)))
        now = time.monotonic()
        # Entries older than one every replica has learned can no longer be served.
        for index in range(len(app.history) - 1, 0, -1):
            times = app.history[index][0]
            if not times or max(times) <= now:
                del app.history[:index]
                break

    def _written_everywhere(self, app: Application) -> None:
        """A test helper's write: every read replica knows it at once."""
        app.changed()
        if app.history:
            app.history.append(((), snapshot(app)))

    def read_view(self, app: Application, replica: int | None = None) -> Application | None:
        """The app as one read replica knows it; ``None`` while it knows nothing of it."""
        with self._lock:
            if not app.history:
                return app
            if replica is None:
                replica = self._rng.randrange(self.replicas)
            for times, snap in reversed(app.history):
                if known_to(times, replica):
                    return view_of(app, snap)
            return None

    def reset_change_tracking(self) -> None:
        """Every delta token issued so far is answered 410 Gone (``syncStateNotFound``)."""
        with self._lock:
            self.delta_generation += 1

    def pick_replica(self) -> int:
        with self._lock:
            return self._rng.randrange(self.replicas)

    # ------------------------------------------------------------------ lookups

    def find_app(self, *, app_id: str | None = None, object_id: str | None = None) -> Application:
        with self._lock:
            app = (
                self._apps_by_app_id.get(app_id)
                if app_id is not None
                else self._apps.get(object_id or "")
            )
            if app is None or app.deleted:
                raise graph_not_found(app_id or object_id or "")
            return app

    def app_by_app_id(self, app_id: str) -> Application | None:
        with self._lock:
            app = self._apps_by_app_id.get(app_id)
            return None if app is None or app.deleted else app

    def app_by_display_name(self, name: str) -> Application:
        with self._lock:
            for object_id in self._order:
                app = self._apps.get(object_id)
                if app is not None and not app.deleted and app.display_name == name:
                    return app
        raise KeyError(name)

    def sp_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        with self._lock:
            return self._sps_by_app_id.get(app_id)

    def sp(self, sp_id: str) -> ServicePrincipal | None:
        with self._lock:
            return self._sps.get(sp_id)

    def apps_in_order(self) -> list[Application]:
        with self._lock:
            return [a for a in (self._apps[i] for i in self._order) if not a.deleted]

    def app_count(self) -> int:
        """Live apps: a deleted one stays behind for delta queries to report."""
        with self._lock:
            return sum(1 for app in self._apps.values() if not app.deleted)

    def secret_of(self, display_name: str) -> str:
        """The value of a seeded walkthrough client's secret (``myclient``...)."""
        return self.scenario_secrets[display_name]

    def passwords(self, app_id: str) -> list[PasswordCredential]:
        """Snapshot of an app's secrets (with values: emulator only)."""
        with self._lock:
            return list(self.find_app(app_id=app_id).password_credentials)

    def keys(self, app_id: str) -> list[KeyCredential]:
        with self._lock:
            return list(self.find_app(app_id=app_id).key_credentials)

    def app_roles_of(self, sp: ServicePrincipal) -> list[AppRole]:
        if sp.own_app_roles:
            return sp.own_app_roles
        app = self.app_by_app_id(sp.app_id)
        return list(app.app_roles) if app else []

    def page(
        self,
        start: int,
        top: int,
        predicate: Callable[[Application], bool] | None = None,
    ) -> tuple[list[Application], int | None]:
        """Up to ``top`` live apps from position ``start``; the position to continue at."""
        out: list[Application] = []
        with self._lock:
            order, apps = self._order, self._apps
            index = max(start, 0)
            while index < len(order):
                app = apps[order[index]]
                index += 1
                if app.deleted or (predicate is not None and not predicate(app)):
                    continue
                if len(out) == top:
                    return out, index - 1
                out.append(app)
            return out, None

    def count_apps(self, predicate: Callable[[Application], bool] | None = None) -> int:
        """How many live apps match (``@odata.count`` of an advanced query)."""
        with self._lock:
            return sum(1 for app in self._apps.values()
                       if not app.deleted and (predicate is None or predicate(app)))

    # ------------------------------------------------------------------ creation

    def _first_party_sp(
        self, app_id: str, name: str, names: list[str], roles: list[AppRole]
    ) -> ServicePrincipal:
        sp = ServicePrincipal(self.new_uuid(), app_id, name, utcnow(), names, roles,
                              app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a")
        return self._register_sp(sp)

    def insert_app(self, app: Application) -> Application:
        with self._lock:
            self._apps[app.id] = app
            self._apps_by_app_id[app.app_id] = app
            self._order.append(app.id)
            return app

    def insert_seeded(self, app: Application, sp: ServicePrincipal) -> None:
        with self._lock:
            self.insert_app(app)
            sp.app_owner_organization_id = self.tenant_id
            self._register_sp(sp)

    def create_app(
        self,
        display_name: str,
        *,
        owned_by_rotator: bool = True,
        owners: Iterable[str] = (),
        secrets: Sequence[tuple[str, datetime]] = (),
        certificates: Sequence[bytes] = (),
        service_principal: bool = True,
        identifier_uris: Sequence[str] = (),
        app_roles: Sequence[AppRole] = (),
        sign_in_audience: str = "AzureADMyOrg",
        lagged: bool = False,
        access_token_version: int | None = None,
    ) -> Application:
        """Test and seed helper: credentials given here are known to every replica at once."""
        with self._lock:
            app = Application(
                id=self.new_uuid(),
                app_id=self.new_uuid(),
                display_name=display_name,
                created=utcnow(),
                identifier_uris=list(identifier_uris),
                app_roles=list(app_roles),
                sign_in_audience=sign_in_audience,
                access_token_version=access_token_version,
            )
            self.insert_app(app)
            owner_ids = set(owners)
            if owned_by_rotator and self.rotator_app_id:
                rotator_sp = self.sp_by_app_id(self.rotator_app_id)
                if rotator_sp is not None:
                    owner_ids.add(rotator_sp.id)
            app.owners = owner_ids
            for value, end in secrets:
                self.add_secret(app.id, value, end)
            for der in certificates:
                self.add_certificate(app.id, der)
            if service_principal:
                self.create_service_principal(app.app_id)
            if lagged:
                # Created through Graph: read replicas learn of the new app late too.
                lag = self._read_lag()
                if lag:
                    app.history.append((lag, snapshot(app)))
            return app

    def add_secret(
        self,
        object_id: str,
        value: str,
        end: datetime,
        display_name: str | None = None,
        *,
        start: datetime | None = None,
        propagate: bool = False,
    ) -> PasswordCredential:
        with self._lock:
            app = self.find_app(object_id=object_id)
            cred = PasswordCredential(
                key_id=self.new_uuid(),
                display_name=display_name,
                secret_text=value,
                start=start or utcnow(),
                end=end,
                visible_at=self._visibility() if propagate else (),
            )
            app.password_credentials.append(cred)
            self._written_everywhere(app)
            return cred

    def add_certificate(
        self,
        object_id: str,
        der: bytes,
        display_name: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        propagate: bool = False,
    ) -> KeyCredential:
        with self._lock:
            app = self.find_app(object_id=object_id)
            cred = self.make_key_credential(der, display_name, start=start, end=end)
            if not propagate:
                cred.visible_at = ()
            app.key_credentials.append(cred)
            self._written_everywhere(app)
            return cred

    def make_key_credential(
        self,
        der: bytes,
        display_name: str | None,
        *,
        key_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        custom_key_identifier: str | None = None,
        usage: str = "Verify",
        key_type: str = "AsymmetricX509Cert",
    ) -> KeyCredential:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise GraphError(
                400,
                "KeyCredentialsInvalidValue",
                "Key credential value is invalid: the key is not a valid X.509 certificate.",
            ) from exc
        sha1, sha256 = cert_thumbprints(der)
        cred = KeyCredential(
            key_id=key_id or self.new_uuid(),
            display_name=display_name or cert.subject.rfc4514_string(),
            # Graph takes the dates from the certificate when the caller leaves them out.
            start=start or cert.not_valid_before_utc,
            end=end or cert.not_valid_after_utc,
            thumbprint=sha1,
            sha256=sha256,
            der=der,
            custom_key_identifier=custom_key_identifier,
            usage=usage,
            type=key_type,
            visible_at=self._visibility(),
        )
        return cred

    def create_service_principal(self, app_id: str) -> ServicePrincipal:
        with self._lock:
            app = self.app_by_app_id(app_id)
            if app is None and app_id in self.foreign_apps and app_id not in self._sps_by_app_id:
                return self.create_foreign_sp(app_id)
            if app is None:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"The appId '{app_id}' of the service principal does not reference a valid "
                    "application object.",
                )
            if app_id in self._sps_by_app_id:
                raise GraphError(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "The service principal cannot be created, updated, or restored because the "
                    "service principal name "
                    f"{app_id} is already in use.",
                )
            sp = ServicePrincipal(
                self.new_uuid(),
                app_id,
                app.display_name,
                utcnow(),
                [*app.identifier_uris, app_id],
                app_owner_organization_id=self.tenant_id,
                sign_in_audience=app.sign_in_audience,
            )
            return self._register_sp(sp)

    # ------------------------------------------------------------------ Graph operations

    # ------------------------------------------------------------------ app management policies

    def effective_policy(self, app: Application) -> Policy | None:
        """The app's own enabled policy, else the tenant default when it is enabled."""
        with self._lock:
            own = self._policies.get(self._app_policy.get(app.id, ""))
            if own is not None and own.is_enabled:
                return own
            return self.default_policy if self.default_policy.is_enabled else None

    def create_policy(
        self, display_name: str, description: str, is_enabled: bool, restrictions: object
    ) -> Policy:
        parsed = parse_restrictions(restrictions)
        with self._lock:
            policy = Policy(self.new_uuid(), display_name, description, is_enabled, parsed)
            self._policies[policy.id] = policy
            return policy

    def policy(self, policy_id: str) -> Policy:
        with self._lock:
            found = self._policies.get(policy_id.lower())
            if found is None:
                raise graph_not_found(policy_id)
            return found

    def policies(self) -> list[Policy]:
        with self._lock:
            return list(self._policies.values())

    def update_default_policy(self, body: dict[str, object]) -> None:
        with self._lock:
            policy = self.default_policy
            if "applicationRestrictions" in body:
                policy.restrictions = parse_restrictions(body["applicationRestrictions"])
            if isinstance(body.get("isEnabled"), bool):
                policy.is_enabled = bool(body["isEnabled"])
            for key, attr in (("displayName", "display_name"), ("description", "description")):
                if isinstance(body.get(key), str):
                    setattr(policy, attr, body[key])

    def assign_policy(self, object_id: str, policy_id: str) -> None:
        """An app holds at most one policy; assigning a second one is refused like Graph."""
        with self._lock:
            app = self.find_app(object_id=object_id)
            policy = self.policy(policy_id)
            current = self._app_policy.get(app.id)
            if current is not None and current != policy.id:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "An app management policy is already assigned to the application; "
                    "remove it before assigning another.",
                )
            self._app_policy[app.id] = policy.id

    def applications_of(self, policy_id: str) -> list[Application]:
        """The live applications a policy is assigned to (its ``appliesTo``)."""
        with self._lock:
            policy = self.policy(policy_id)
            return [app for app_id, pid in self._app_policy.items()
                    if pid == policy.id and (app := self._apps.get(app_id)) is not None
                    and not app.deleted]

    def policies_of(self, object_id: str) -> list[Policy]:
        with self._lock:
            app = self.find_app(object_id=object_id)
            found = self._policies.get(self._app_policy.get(app.id, ""))
            return [found] if found is not None else []

    def set_lifetime_policy(self, max_days: int | None) -> None:
        """Shortcut: the tenant default limits secrets and certificates to ``max_days``."""
        with self._lock:
            self.lifetime_max_days = max_days
            policy = self.default_policy
            if max_days is None:
                policy.restrictions = Restrictions()
                policy.is_enabled = False
                return
            text = f"P{max_days}D"
            policy.restrictions = Restrictions(
                [Restriction("passwordLifetime", timedelta(days=max_days), text)],
                [Restriction("asymmetricKeyLifetime", timedelta(days=max_days), text)],
            )
            policy.is_enabled = True

    def check_lifetime(self, app: Application, start: datetime, end: datetime,
                       *, password: bool) -> None:
        policy = self.effective_policy(app)
        if password:
            check_password(policy, app.created, start, end)
        else:
            check_key(policy, app.created, start, end)

    def add_password(
        self,
        object_id: str,
        display_name: str | None,
        end: datetime | None,
        start: datetime | None = None,
    ) -> PasswordCredential:
        with self._lock:
            app = self.find_app(object_id=object_id)
            before = snapshot(app)
            start = start or utcnow()
            end = end or start + DEFAULT_LIFETIME
            self.check_lifetime(app, start, end, password=True)
            if (app.sign_in_audience in PERSONAL_AUDIENCES
                    and len(app.password_credentials) >= MSA_PASSWORD_LIMIT):
                raise GraphError(
                    400,
                    "TooManyPasswordCredentials",
                    f"The application already has {len(app.password_credentials)} password "
                    f"credentials; applications whose signInAudience is "
                    f"'{app.sign_in_audience}' can have at most {MSA_PASSWORD_LIMIT}.",
                    details=[{"code": "TooManyPasswordCredentials",
                              "target": "passwordCredentials"}],
                )
            cred = PasswordCredential(
                key_id=self.new_uuid(),
                display_name=display_name,
                secret_text=make_secret_text(),
                start=start,
                end=end,
                visible_at=self._visibility(),
            )
            app.password_credentials.append(cred)
            self._written(app, before)
            return cred

    def remove_password(self, object_id: str, key_id: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            kept = [c for c in app.password_credentials if c.key_id != key_id.lower()]
            if len(kept) == len(app.password_credentials):
                raise GraphError(
                    404,
                    "Request_ResourceNotFound",
                    f"No password credential found with keyId '{key_id}'.",
                )
            self._bury(app, [c for c in app.password_credentials if c not in kept])
            before = snapshot(app)
            app.password_credentials = kept
            self._written(app, before)

    def add_key(self, object_id: str, cred: KeyCredential) -> KeyCredential:
        with self._lock:
            app = self.find_app(object_id=object_id)
            self.check_lifetime(app, cred.start, cred.end, password=False)
            before = snapshot(app)
            app.key_credentials.append(cred)
            self._written(app, before)
            return cred

    def remove_key(self, object_id: str, key_id: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            kept = [c for c in app.key_credentials if c.key_id != key_id.lower()]
            if len(kept) == len(app.key_credentials):
                raise GraphError(
                    404,
                    "Request_ResourceNotFound",
                    f"No key credential found with keyId '{key_id}'.",
                )
            self._bury(app, [c for c in app.key_credentials if c not in kept])
            before = snapshot(app)
            app.key_credentials = kept
            self._written(app, before)

    def replace_key_credentials(self, object_id: str, entries: list[dict[str, object]]) -> None:
        """PATCH semantics: the list replaces the old one; known keyIds may omit ``key``."""
        with self._lock:
            app = self.find_app(object_id=object_id)
            existing = {c.key_id: c for c in app.key_credentials}
            new: list[KeyCredential] = []
            for entry in entries:
                key_id = str(entry.get("keyId") or "").lower() or None
                raw = entry.get("key")
                if raw is None:
                    if key_id is None or key_id not in existing:
                        raise GraphError(
                            400,
                            "KeyCredentialsInvalidValue",
                            "Key credential value is invalid: a new key credential needs 'key'.",
                        )
                    new.append(existing[key_id])
                    continue
                der = base64.b64decode(str(raw))
                if key_id in existing and existing[key_id].der not in (None, der):
                    raise GraphError(
                        400,
                        "Request_BadRequest",
                        f"Update to existing credential with KeyId '{key_id}' is not allowed.",
                    )
                if key_id in existing:
                    new.append(existing[key_id])
                    continue
                cred = self.make_key_credential(
                    der,
                    _opt_str(entry.get("displayName")),
                    key_id=key_id,
                    start=_opt_dt(entry.get("startDateTime")),
                    end=_opt_dt(entry.get("endDateTime")),
                    usage=str(entry.get("usage") or "Verify"),
                    key_type=str(entry.get("type") or "AsymmetricX509Cert"),
                )
                self.check_lifetime(app, cred.start, cred.end, password=False)
                new.append(cred)
            self._bury(app, [c for c in app.key_credentials if c not in new])
            before = snapshot(app)
            app.key_credentials = new
            self._written(app, before)

    def set_sign_in_audience(self, object_id: str, audience: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            if audience not in SIGN_IN_AUDIENCES:
                raise GraphError(
                    400, "Request_BadRequest",
                    f"Invalid value specified for property 'signInAudience': '{audience}'.")
            if (audience in PERSONAL_AUDIENCES
                    and len(app.password_credentials) > MSA_PASSWORD_LIMIT):
                raise GraphError(
                    400, "Request_BadRequest",
                    f"Applications whose signInAudience is '{audience}' can have at most "
                    f"{MSA_PASSWORD_LIMIT} password credentials.")
            before = snapshot(app)
            app.sign_in_audience = audience
            self._written(app, before)

    def set_access_token_version(self, object_id: str, version: int | None) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            app.access_token_version = version
            app.changed()

    def token_version_for(self, resource: ServicePrincipal) -> int:
        """The version of the access tokens issued for ``resource``: Graph and Key Vault
        accept v1; a tenant app its ``api.requestedAccessTokenVersion`` (unset means 1)."""
        with self._lock:
            if resource in (self.graph_sp, self.vault_sp, self.ossrdbms_sp):
                return 1
            app = self._apps_by_app_id.get(resource.app_id)
            return 2 if app is not None and app.access_token_version == 2 else 1

    def rename_app(self, object_id: str, display_name: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            before = snapshot(app)
            app.display_name = display_name
            self._written(app, before)

    def delete_app(self, object_id: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            app.deleted = True
            app.changed()
            self._apps_by_app_id.pop(app.app_id, None)
            sp = self._sps_by_app_id.get(app.app_id)
            if sp is not None:
                self._unregister_sp(sp)
                self._assignments = [
                    a for a in self._assignments if sp.id not in (a.principal_id, a.resource_id)
                ]

    # ------------------------------------------------------------------ consent and access

    def grant_app_role(
        self, client_app_id: str, resource_app_id: str, role_value: str, consented: bool = True
    ) -> AppRoleAssignment:
        with self._lock:
            client = self._sps_by_app_id.get(client_app_id)
            resource = self._sps_by_app_id.get(resource_app_id)
            if client is None or resource is None:
                raise KeyError("both apps need a service principal")
            role = next((r for r in self.app_roles_of(resource) if r.value == role_value), None)
            if role is None:
                raise KeyError(f"{resource.display_name} has no app role {role_value!r}")
            return self._add_assignment(client, resource, role.id, consented)

    def assign_app_role(
        self, principal_id: str, resource_id: str, app_role_id: str
    ) -> AppRoleAssignment:
        """The Graph operation behind admin consent."""
        with self._lock:
            client = self._sps.get(principal_id)
            resource = self._sps.get(resource_id)
            if client is None:
                raise graph_not_found(principal_id)
            if resource is None:
                raise graph_not_found(resource_id)
            if not any(r.id == app_role_id for r in self.app_roles_of(resource)):
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"Permission being assigned was not found on application '{resource.app_id}'.",
                )
            return self._add_assignment(client, resource, app_role_id, True)

    def _add_assignment(
        self,
        client: ServicePrincipal,
        resource: ServicePrincipal,
        app_role_id: str,
        consented: bool,
    ) -> AppRoleAssignment:
        for existing in self._assignments:
            if (existing.principal_id, existing.resource_id, existing.app_role_id) == (
                client.id,
                resource.id,
                app_role_id,
            ):
                if consented and not existing.consented:
                    existing.consented = True
                    return existing
                if existing.consented:
                    raise GraphError(
                        409,
                        "Request_BadRequest",
                        "Permission being assigned already exists on the object",
                    )
                return existing
        assignment = AppRoleAssignment(
            id=base64.urlsafe_b64encode(uuid.UUID(self.new_uuid()).bytes).decode().rstrip("="),
            principal_id=client.id,
            resource_id=resource.id,
            app_role_id=app_role_id,
            created=utcnow(),
            consented=consented,
            principal_display_name=client.display_name,
            resource_display_name=resource.display_name,
        )
        self._assignments.append(assignment)
        return assignment

    def assignments(
        self, *, principal_id: str | None = None, resource_id: str | None = None
    ) -> list[AppRoleAssignment]:
        with self._lock:
            return [
                a
                for a in self._assignments
                if a.consented
                and (principal_id is None or a.principal_id == principal_id)
                and (resource_id is None or a.resource_id == resource_id)
            ]

    def roles_for(self, client: ServicePrincipal, resource: ServicePrincipal) -> list[str]:
        """Values of the app roles granted (with admin consent) to ``client`` on ``resource``."""
        with self._lock:
            by_id = {r.id: r.value for r in self.app_roles_of(resource) if r.is_enabled}
            return sorted(
                {
                    by_id[a.app_role_id]
                    for a in self._assignments
                    if a.consented
                    and a.principal_id == client.id
                    and a.resource_id == resource.id
                    and a.app_role_id in by_id
                }
            )

    def revoke_app_role(self, client_app_id: str, resource_app_id: str, role_value: str) -> None:
        """Take a granted app role away (tokens issued afterwards lack it)."""
        with self._lock:
            client = self._sps_by_app_id.get(client_app_id)
            resource = self._sps_by_app_id.get(resource_app_id)
            if client is None or resource is None:
                raise KeyError("both apps need a service principal")
            role_ids = {r.id for r in self.app_roles_of(resource) if r.value == role_value}
            self._assignments = [
                a for a in self._assignments
                if not (a.principal_id == client.id and a.resource_id == resource.id
                        and a.app_role_id in role_ids)
            ]

    def grant_vault_access(self, app_id: str) -> None:
        with self._lock:
            self._vault_access.add(app_id)

    def has_vault_access(self, app_id: str) -> bool:
        with self._lock:
            return app_id in self._vault_access

    def resolve_resource(self, resource: str) -> ServicePrincipal | None:
        """The service principal a ``{resource}/.default`` scope names, as Entra resolves it."""
        wanted = resource.rstrip("/").lower()
        with self._lock:
            for sp in (self.graph_sp, self.vault_sp, self.ossrdbms_sp):
                if wanted in (n.rstrip("/").lower() for n in sp.service_principal_names):
                    return sp
            by_app_id = self._sps_by_app_id.get(resource)
            if by_app_id is not None:
                return by_app_id
            # Identifier URIs can change after the service principal exists, so ask the app.
            for app in self._apps_by_app_id.values():
                if any(uri.rstrip("/").lower() == wanted for uri in app.identifier_uris):
                    return self._sps_by_app_id.get(app.app_id)
        return None

    def owns(self, caller_sp_id: str, app: Application) -> bool:
        with self._lock:
            return caller_sp_id in app.owners

    def add_owner(self, object_id: str, sp_id: str) -> None:
        with self._lock:
            app = self.find_app(object_id=object_id)
            self._check_owner(sp_id)
            app.owners.add(sp_id)

    def match_secret(self, app: Application, secret: str) -> PasswordCredential | None:
        with self._lock:
            creds = list(app.password_credentials)
        found = None
        for cred in creds:
            # Compare every candidate so timing does not tell which one matched.
            if hmac.compare_digest(cred.secret_text.encode(), secret.encode()):
                found = cred
        return found


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_dt(value: object) -> datetime | None:
    return None if value is None else parse_iso(str(value))
