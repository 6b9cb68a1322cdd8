"""In-memory stand-ins for the ports, for fast engine tests without network.

They behave like the real services in the ways the engine depends on: secret
text exists only in the add_password answer, removal is idempotent, new
credentials can be refused for a while (propagation), and any call can be made
to fail or to "crash" the process right after its write took effect.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import jwt
from cryptography import x509

from rotator import certificate_material as certs
from rotator.domain.app_management import (
    PERSONAL_AUDIENCES,
    CredentialRestrictions,
    TenantPolicies,
)
from rotator.domain.certificates import (
    PROOF_AUDIENCE,
    PROOF_MAX_LIFETIME,
    KeyEntry,
    thumbprint_of,
    x5t_of,
)
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.secret_value import SecretValue
from rotator.ports import (
    DeltaRound,
    DirectoryError,
    NewPassword,
    ScanItem,
    SecretStoreError,
    SelfSignedRequest,
    StoredCertificate,
    StoredSecret,
    TokenOutcome,
)

CANARY = "CANARY-"  # every secret these fakes mint starts with this
READ_REPLICAS = 4  # as many as the emulated tenant has


class Crash(BaseException):
    """The process dies here: not an Exception, so no step handler catches it."""


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@dataclass
class Faults:
    """Per-operation queues: an Exception to raise before the call, or a Crash after it."""

    before: dict[str, list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    crash_after: set[str] = field(default_factory=set)
    # The write is applied but its answer never arrives (a timeout): the caller lives on.
    lost_after: set[str] = field(default_factory=set)
    fired: Counter[str] = field(default_factory=Counter)  # "crash" / "lost_response"

    def check_before(self, op: str) -> None:
        queue = self.before.get(op)
        if queue:
            raise queue.pop(0)

    def check_after(self, op: str) -> None:
        if op in self.crash_after:
            self.crash_after.discard(op)
            self.fired["crash"] += 1
            raise Crash(op)
        if op in self.lost_after:
            self.lost_after.discard(op)
            self.fired["lost_response"] += 1
            if op.startswith(("set_secret", "disable_version")):
                raise SecretStoreError("Key Vault request timed out", transient=True)
            raise DirectoryError("Graph request timed out", transient=True)


@dataclass
class FakeApp:
    object_id: str
    app_id: str
    display_name: str
    credentials: list[Credential] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # key_id -> secret text
    ders: dict[str, bytes] = field(default_factory=dict)  # key_id -> certificate (DER)
    owned: bool = True
    roles: list[str] = field(default_factory=list)
    max_lifetime_days: float | None = None
    # The app management policy in force (what Graph would read), and whether the
    # rotator's identity may read it (Policy.Read.All).
    policy: CredentialRestrictions | None = None
    policy_readable: bool = True
    sign_in_audience: str = "AzureADMyOrg"

    def credential_of(self, key_id: str) -> Credential | None:
        return next((c for c in self.credentials if c.key_id == key_id), None)

    def snapshot(self) -> AppRegistration:
        return AppRegistration(self.object_id, self.app_id, self.display_name,
                               tuple(self.credentials), self.sign_in_audience)


class FakeDirectory:
    def __init__(self, clock: FakeClock, faults: Faults | None = None) -> None:
        self.clock = clock
        self.faults = faults or Faults()
        self.apps: dict[str, FakeApp] = {}
        # Service principals with credentials of their own (read by scans, never rotated).
        self.service_principals: list[AppRegistration] = []
        # Client ids of apps that hold a federated identity credential.
        self.federated: set[str] = set()
        # The tenant default policy; an app's own FakeApp.policy is what is in force for it.
        self.default_policy: CredentialRestrictions | None = None
        self.calls: list[str] = []
        self.proof_signers: list[str] = []  # thumbprints that signed accepted proofs
        self.key_reads = 0
        # Reads that still show only the credentials in known_before (read-after-write lag).
        self.lagging_reads = 0
        self.known_before: set[str] = set()
        # The emulator's read-after-write lag on the fake clock: each write reaches each of
        # READ_REPLICAS read replicas after its own delay in [0, read_lag_seconds], and a
        # read (of the app or of its key list) asks one replica drawn from lag_rng.
        self.read_lag_seconds = 0.0
        # Removal lag: a removed secret or certificate still gets tokens for up to this long.
        self.removal_lag_seconds = 0.0
        self.lag_rng = random.Random(0)  # replica choice: repeatable per scenario
        self.stale_reads = 0  # reads answered with something older than the truth
        self.lingering_tokens = 0  # tokens granted to a credential already removed
        self._history: dict[str, list[tuple[tuple[datetime, ...], tuple[Credential, ...]]]] = {}
        # Removed credentials (secret value or certificate thumbprint) and when every token
        # replica has forgotten them.
        self.lingering: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        self._all_ders: dict[str, bytes] = {}
        # Race hooks: another writer acting after a key list read / after a PATCH landed
        # (given the credentials as they were before it).
        self.after_key_read: Callable[[FakeApp, int], None] | None = None
        self.after_patch: Callable[[FakeApp, list[Credential]], None] | None = None

    def add_app(self, display_name: str, *, secret_days_left: float = 10,
                owned: bool = True, roles: Sequence[str] = ()) -> FakeApp:
        app = FakeApp(uuid.uuid4().hex, str(uuid.uuid4()), display_name, owned=owned,
                      roles=list(roles))
        self.apps[app.object_id] = app
        now = self.clock.now()
        key = str(uuid.uuid4())
        app.credentials.append(Credential(key, CredentialKind.SECRET, "original",
                                          now - timedelta(days=170),
                                          now + timedelta(days=secret_days_left), "CAN"))
        app.values[key] = f"{CANARY}{uuid.uuid4().hex}"
        return app

    def add_cert_app(self, display_name: str, *, days_left: float = 10,
                     material: certs.CertificateMaterial | None = None) -> FakeApp:
        """An app whose only credential is a certificate nobody gave rotator the key of."""
        app = FakeApp(uuid.uuid4().hex, str(uuid.uuid4()), display_name)
        self.apps[app.object_id] = app
        now = self.clock.now()
        material = material or certs.generate("RSA2048", "CN=original",
                                              now - timedelta(days=170),
                                              now + timedelta(days=days_left))
        self.put_certificate(app, material.der, "original")
        return app

    def put_certificate(self, app: FakeApp, der: bytes, display_name: str | None,
                        key_id: str | None = None) -> Credential:
        """Another writer (or the portal) adds a certificate, bypassing every check."""
        cert = x509.load_der_x509_certificate(der)
        cred = Credential(key_id or str(uuid.uuid4()), CredentialKind.CERTIFICATE, display_name,
                          cert.not_valid_before_utc, cert.not_valid_after_utc,
                          thumbprint=thumbprint_of(der))
        app.credentials.append(cred)
        app.ders[cred.key_id] = der
        self._all_ders[cred.key_id] = der
        return cred

    def by_app_id(self, app_id: str) -> FakeApp | None:
        return next((a for a in self.apps.values() if a.app_id == app_id), None)

    # ---------------------------------------------------------------- lag

    def _written(self, app: FakeApp, before: Sequence[Credential]) -> None:
        """After a write through the port: the read replicas learn it late."""
        gone = [c for c in before if c not in app.credentials]
        if gone and self.removal_lag_seconds > 0:
            until = self.clock.now() + timedelta(
                seconds=self.lag_rng.uniform(0, self.removal_lag_seconds))
            for c in gone:
                mark = (app.values.get(c.key_id) if c.kind is CredentialKind.SECRET
                        else c.thumbprint)
                if mark:
                    self.lingering[app.app_id].append((mark, until))
        if self.read_lag_seconds <= 0:
            return
        history = self._history.setdefault(app.object_id, [])
        if not history:
            history.append(((), tuple(before)))
        now = self.clock.now()
        times = tuple(now + timedelta(seconds=self.lag_rng.uniform(0, self.read_lag_seconds))
                      for _ in range(READ_REPLICAS))
        history.append((times, tuple(app.credentials)))

    def _replica_view(self, app: FakeApp) -> tuple[Credential, ...]:
        """The credentials as one read replica knows them."""
        current = tuple(app.credentials)
        history = self._history.get(app.object_id)
        if not history:
            return current
        if history[-1][1] != current:  # a write outside the ports (a test, the portal)
            history.append(((), current))
        replica = self.lag_rng.randrange(READ_REPLICAS)
        now = self.clock.now()
        seen = next((creds for times, creds in reversed(history)
                     if not times or now >= times[replica]), history[0][1])
        if seen != current:
            self.stale_reads += 1
        return seen

    def still_accepts(self, app: FakeApp, mark: str) -> bool:
        """A removed secret value or certificate thumbprint some token replica still knows."""
        now = self.clock.now()
        found = any(m == mark and now < until for m, until in self.lingering.get(app.app_id, ()))
        self.lingering_tokens += found
        return found

    async def list_applications(self) -> AsyncIterator[ScanItem]:
        self.faults.check_before("list")
        for app in list(self.apps.values()):
            yield ScanItem(app=app.snapshot(), raw_id=app.object_id)

    async def list_service_principals(self) -> AsyncIterator[ScanItem]:
        self.faults.check_before("list_sps")
        for sp in list(self.service_principals):
            yield ScanItem(app=sp, raw_id=sp.object_id)

    async def federated_app_ids(self) -> set[str]:
        self.faults.check_before("federated")
        return {a.lower() for a in self.federated}

    async def track_changes(self, resource: str) -> str:
        # This fake keeps no change log: scans against it are always full.
        raise DirectoryError("the fake directory has no delta queries", status=400,
                             code="Request_UnsupportedQuery")

    async def list_changes(self, resource: str, link: str, into: DeltaRound
                           ) -> AsyncIterator[ScanItem]:
        raise DirectoryError("the fake directory has no delta queries", status=400,
                             code="Request_UnsupportedQuery")
        yield  # pragma: no cover - an async generator that yields nothing

    def list_requests(self) -> int:
        return 0

    async def get_application(self, app_id: str) -> AppRegistration | None:
        self.calls.append("get")
        self.faults.check_before("get")
        app = self.by_app_id(app_id)
        if app is None:
            return None
        snap = replace(app.snapshot(), credentials=self._replica_view(app))
        if self.lagging_reads:
            # A read replica that has not learned rotator's writes yet.
            self.lagging_reads -= 1
            snap = replace(snap, credentials=tuple(
                c for c in snap.credentials if c.key_id in self.known_before))
        return snap

    def _writable(self, object_id: str) -> FakeApp:
        app = self.apps.get(object_id)
        if app is None:
            raise DirectoryError("Graph refused: Request_ResourceNotFound", status=404,
                                 code="Request_ResourceNotFound")
        if not app.owned:
            raise DirectoryError(
                "Graph refused to add a client secret: Authorization_RequestDenied: "
                "Insufficient privileges to complete the operation.",
                status=403, code="Authorization_RequestDenied")
        return app

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        self.calls.append("get_credential_policy")
        app = self.apps[object_id]
        if not app.policy_readable:
            raise DirectoryError(
                "Graph refused to read the app management policies: "
                "Authorization_RequestDenied: Insufficient privileges to complete the operation.",
                status=403, code="Authorization_RequestDenied")
        return app.policy

    async def list_credential_policies(self) -> TenantPolicies:
        self.calls.append("list_credential_policies")
        if any(not a.policy_readable for a in self.apps.values()):
            raise DirectoryError(
                "Graph refused to read the app management policies: "
                "Authorization_RequestDenied: Insufficient privileges to complete the operation.",
                status=403, code="Authorization_RequestDenied")
        return TenantPolicies(self.default_policy, {
            a.object_id.lower(): a.policy for a in self.apps.values()
            if a.policy is not None and a.policy is not self.default_policy})

    async def add_password(self, object_id: str, display_name: str, end: datetime
                           ) -> NewPassword:
        self.calls.append("add_password")
        self.faults.check_before("add_password")
        app = self._writable(object_id)
        now = self.clock.now()
        if app.policy is not None and app.policy.password_addition_blocked:
            raise DirectoryError(
                "Graph refused to add a client secret: CredentialTypeNotAllowedAsPerAppPolicy: "
                f"Credential type not allowed as per assigned policy '{app.policy.policy_id}'",
                status=400, code="CredentialTypeNotAllowedAsPerAppPolicy")
        secrets = [c for c in app.credentials if c.kind is CredentialKind.SECRET]
        if app.sign_in_audience in PERSONAL_AUDIENCES and len(secrets) >= 2:
            raise DirectoryError(
                "Graph refused to add a client secret: TooManyPasswordCredentials: "
                "at most 2 password credentials", status=400,
                code="TooManyPasswordCredentials")
        if (app.policy is not None and app.policy.password_max_lifetime is not None
                and end - now > app.policy.password_max_lifetime):
            raise DirectoryError(
                "Graph refused to add a client secret: CredentialInvalidLifetimeAsPerAppPolicy: "
                "Credential lifetime exceeds the max value allowed as per assigned policy "
                f"'{app.policy.policy_id}'", status=400,
                code="CredentialInvalidLifetimeAsPerAppPolicy")
        if app.max_lifetime_days is not None and end - now > timedelta(
                days=app.max_lifetime_days):
            raise DirectoryError(
                "Graph refused to add a client secret: CredentialInvalidLifetimeAsPerAppPolicy: "
                f"Credential lifetime exceeds the max value allowed as per assigned policy "
                f"({app.max_lifetime_days:g} days)", status=400,
                code="CredentialInvalidLifetimeAsPerAppPolicy")
        key = str(uuid.uuid4())
        value = f"{CANARY}{uuid.uuid4().hex}"
        before = list(app.credentials)
        app.credentials.append(Credential(key, CredentialKind.SECRET, display_name, now, end,
                                          value[:3]))
        app.values[key] = value
        self._written(app, before)
        self.faults.check_after("add_password")
        return NewPassword(key, SecretValue(value), value[:3], now, end)

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self.calls.append("remove_password")
        self.faults.check_before("remove_password")
        app = self._writable(object_id)
        before = list(app.credentials)
        app.credentials = [c for c in app.credentials if c.key_id != key_id]
        if len(before) != len(app.credentials):
            self._written(app, before)
        app.values.pop(key_id, None)
        self.faults.check_after("remove_password")


    # ---------------------------------------------------------------- certificates

    def _check_proof(self, app: FakeApp, proof: str) -> str:
        """Graph's proof rules, against the fake clock; returns the signer's thumbprint."""
        now = self.clock.now()
        valid = {c.key_id: app.ders[c.key_id] for c in app.credentials
                 if c.kind is CredentialKind.CERTIFICATE and c.is_valid_at(now)
                 and c.key_id in app.ders}
        if not valid:
            raise DirectoryError("Graph refused: the application has no valid certificate to "
                                 "verify the proof of possession", status=400,
                                 code="Request_BadRequest")
        x5t = jwt.get_unverified_header(proof).get("x5t")
        der = next((d for d in valid.values() if x5t_of(d) == x5t), None)
        if der is None:
            raise DirectoryError("Graph refused: proof not signed by a valid certificate",
                                 status=401, code="Authentication_MissingOrMalformed")
        claims = jwt.decode(proof, x509.load_der_x509_certificate(der).public_key(),  # type: ignore[arg-type]
                            algorithms=["RS256", "ES256"], audience=PROOF_AUDIENCE,
                            options={"verify_exp": False, "verify_nbf": False})
        stamp = now.timestamp()
        if (claims["iss"] != app.object_id
                or claims["exp"] - claims["nbf"] > PROOF_MAX_LIFETIME.total_seconds()
                or claims["exp"] <= stamp or claims["nbf"] > stamp + 300):
            raise DirectoryError("Graph refused: proof claims are wrong", status=401,
                                 code="Authentication_MissingOrMalformed")
        thumb = thumbprint_of(der)
        self.proof_signers.append(thumb)
        return thumb

    async def add_key(self, object_id: str, certificate_der: bytes, display_name: str,
                      proof: str) -> Credential:
        self.calls.append("add_key")
        self.faults.check_before("add_key")
        app = self._writable(object_id)
        self._check_proof(app, proof)
        before = list(app.credentials)
        cred = self.put_certificate(app, certificate_der, display_name)
        self._written(app, before)
        self.faults.check_after("add_key")
        return cred

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        self.calls.append("remove_key")
        self.faults.check_before("remove_key")
        app = self._writable(object_id)
        if app.credential_of(key_id) is None:
            return
        self._check_proof(app, proof)
        before = list(app.credentials)
        app.credentials = [c for c in app.credentials if c.key_id != key_id]
        self._written(app, before)
        app.ders.pop(key_id, None)
        self.faults.check_after("remove_key")

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        self.calls.append("list_keys")
        app = self._writable(object_id)
        entries = [
            KeyEntry(c.key_id, base64.b64encode(self._all_ders[c.key_id]).decode(),
                     c.display_name, start=c.start, end=c.end, thumbprint=c.thumbprint)
            for c in self._replica_view(app) if c.kind is CredentialKind.CERTIFICATE
        ]
        self.key_reads += 1
        if self.after_key_read is not None:
            self.after_key_read(app, self.key_reads)
        return entries

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        self.calls.append("patch")
        self.faults.check_before("patch")
        app = self._writable(object_id)
        before = list(app.credentials)
        old = {c.key_id: c for c in app.credentials if c.kind is CredentialKind.CERTIFICATE}
        kept = [c for c in app.credentials if c.kind is not CredentialKind.CERTIFICATE]
        ders: dict[str, bytes] = {}
        for e in entries:
            if e.key_id in old:
                kept.append(old[e.key_id])
                ders[e.key_id] = app.ders[e.key_id]
                continue
            assert e.key is not None, "a new key credential needs its certificate"
            der = base64.b64decode(e.key)
            cert = x509.load_der_x509_certificate(der)
            kept.append(Credential(e.key_id, CredentialKind.CERTIFICATE, e.display_name,
                                   cert.not_valid_before_utc, cert.not_valid_after_utc,
                                   thumbprint=thumbprint_of(der)))
            ders[e.key_id] = der
            self._all_ders[e.key_id] = der
        app.credentials = kept
        app.ders = ders
        self._written(app, before)
        if self.after_patch is not None:
            self.after_patch(app, before)
        self.faults.check_after("patch")


class FakeSecretStore:
    def __init__(self, clock: FakeClock, faults: Faults | None = None) -> None:
        self.clock = clock
        self.faults = faults or Faults()
        self.secrets: dict[str, list[StoredSecret]] = defaultdict(list)

    def latest(self, name: str) -> StoredSecret | None:
        versions = self.secrets.get(name) or []
        return versions[-1] if versions else None

    async def set_secret(self, name: str, value: SecretValue, *, content_type: str,
                         tags: Mapping[str, str], expires_on: datetime | None = None,
                         enabled: bool = True) -> StoredSecret:
        self.faults.check_before("set_secret")
        if not name.replace("-", "").isalnum():
            raise SecretStoreError("Key Vault refused: BadParameter", status=400,
                                   code="BadParameter")
        stored = StoredSecret(name, uuid.uuid4().hex, enabled, content_type, dict(tags),
                              expires_on, self.clock.now(), value)
        self.secrets[name].append(stored)
        self.faults.check_after(f"set_secret:{name}")
        return replace(stored, value=None)

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        self.faults.check_before("get_secret")
        versions = self.secrets.get(name) or []
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        return [replace(v, value=None) for v in self.secrets.get(name) or []]

    async def disable_version(self, name: str, version: str) -> None:
        self.faults.check_before("disable_version")
        self.secrets[name] = [replace(v, enabled=False) if v.version == version else v
                              for v in self.secrets[name]]
        self.faults.check_after("disable_version")


class FakeCertificateStore:
    """Key Vault certificate objects over the fake vault: each certificate version is kept
    as the secret version of the same name and version (its backing secret), so the
    vault's faults (``set_secret:<name>`` and the rest), its checks and the invariants
    apply to certificate objects unchanged. ``create_self_signed`` is the vault making a
    key pair: the key is made here, on the vault's side of the port."""

    def __init__(self, vault: FakeSecretStore) -> None:
        self.vault = vault
        self.created: list[str] = []  # versions the "vault" made

    def _cert(self, stored: StoredSecret) -> StoredCertificate:
        der = b""
        if stored.value is not None:
            der = certs.load(stored.value, stored.content_type).der
        return StoredCertificate(stored.name, stored.version, stored.enabled, der,
                                 stored.content_type, dict(stored.tags), stored.created_on,
                                 stored.expires_on)

    async def import_certificate(self, name: str, bundle: SecretValue, *, content_type: str,
                                 tags: Mapping[str, str], enabled: bool = True
                                 ) -> StoredCertificate:
        certs.load(bundle, content_type)  # Key Vault refuses what it cannot read
        stored = await self.vault.set_secret(name, bundle, content_type=content_type,
                                             tags=tags, enabled=enabled)
        return self._cert(replace(stored, value=bundle))

    async def create_self_signed(self, name: str, request: SelfSignedRequest, *,
                                 tags: Mapping[str, str]) -> StoredCertificate:
        now = self.vault.clock.now()
        made = certs.generate(f"RSA{request.key_size}", request.subject, now,
                              now + timedelta(days=30 * request.validity_months))
        fmt = "pem" if request.content_type == "application/x-pem-file" else "pkcs12"
        value, content_type = certs.bundle(made, fmt)
        stored = await self.vault.set_secret(name, value, content_type=content_type,
                                             tags=tags, expires_on=made.not_after)
        self.created.append(stored.version)
        return self._cert(replace(stored, value=value))

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        stored = await self.vault.get_secret(name, version)
        return None if stored is None else self._cert(stored)

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        return [self._cert(v) for v in await self.vault.list_versions(name)]

    async def disable_version(self, name: str, version: str) -> None:
        await self.vault.disable_version(name, version)

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        return await self.vault.get_secret(name, version)


class FakeProbe:
    """Grants a token when the secret belongs to the app; can refuse the first N tries."""

    def __init__(self, directory: FakeDirectory, tenant_id: str) -> None:
        self.directory = directory
        self.tenant_id = tenant_id
        self.refuse_first = 0
        # Answers of a token endpoint in trouble (HTTP 503), before any refusal.
        self.unavailable_first = 0
        # Answers of a throttling token endpoint (HTTP 429 with this Retry-After), first.
        self.throttled_first = 0
        self.throttle_retry_after = 30.0
        # Every answer a refusal with this code (a configuration error), when set.
        self.refuse_with: str | None = None
        self.attempts = 0
        self.hook: Callable[[], None] | None = None
        self.pem_bundles: list[SecretValue] = []
        self.token_version = 1  # of the verify scope's resource

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue,
                         scope: str) -> TokenOutcome:
        self.attempts += 1
        if self.hook:
            self.hook()
        if (outage := self._outage()) is not None:
            return outage
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return TokenOutcome(False, error_code="AADSTS7000215", message="invalid secret")
        app = self.directory.by_app_id(client_id)
        if app is None:
            return TokenOutcome(False, error_code="AADSTS700016", message="not found")
        if (secret.reveal() not in app.values.values()
                and not self.directory.still_accepts(app, secret.reveal())):
            return TokenOutcome(False, error_code="AADSTS7000215", message="invalid secret")
        return self._token(client_id, app, "1")

    def _outage(self) -> TokenOutcome | None:
        if self.refuse_with is not None:
            return TokenOutcome(False, error_code=self.refuse_with, status=401,
                                message=f"{self.refuse_with}: refused")
        if self.throttled_first > 0:
            self.throttled_first -= 1
            return TokenOutcome(False, status=429, retry_after=self.throttle_retry_after,
                                message="token endpoint unavailable (HTTP 429): AADSTS90055")
        if self.unavailable_first <= 0:
            return None
        self.unavailable_first -= 1
        return TokenOutcome(False, status=503,
                            message="token endpoint unavailable (HTTP 503): AADSTS90033")

    def _token(self, client_id: str, app: FakeApp, acr: str) -> TokenOutcome:
        """A v1 token (Graph, Key Vault, a portal-made API), or v2 with token_version 2."""
        claims: dict[str, object] = {"tid": self.tenant_id}
        if self.token_version == 2:
            claims.update(ver="2.0", azp=client_id, azpacr=acr)
        else:
            claims.update(ver="1.0", appid=client_id, appidacr=acr)
        if app.roles:
            claims["roles"] = list(app.roles)
        return TokenOutcome(True, claims=claims)

    async def try_certificate(self, tenant_id: str, client_id: str, pem_bundle: SecretValue,
                              scope: str) -> TokenOutcome:
        """Like the token endpoint: the bundle's key must sign for a valid registered cert."""
        self.attempts += 1
        self.pem_bundles.append(pem_bundle)
        if self.hook:
            self.hook()
        if (outage := self._outage()) is not None:
            return outage
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return TokenOutcome(False, error_code="AADSTS700027", message="unknown certificate")
        app = self.directory.by_app_id(client_id)
        if app is None:
            return TokenOutcome(False, error_code="AADSTS700016", message="not found")
        material = certs.load(pem_bundle, "application/x-pem-file")
        now = self.directory.clock.now()
        registered = any(c.thumbprint == material.thumbprint and c.is_valid_at(now)
                         for c in app.credentials) or self.directory.still_accepts(
                             app, material.thumbprint)
        pub = material.certificate.public_key().public_bytes(
            certs.serialization.Encoding.DER,
            certs.serialization.PublicFormat.SubjectPublicKeyInfo)
        own = material.private_key.public_key().public_bytes(
            certs.serialization.Encoding.DER,
            certs.serialization.PublicFormat.SubjectPublicKeyInfo)
        if not registered or pub != own:
            return TokenOutcome(False, error_code="AADSTS700027", message="unknown certificate")
        return self._token(client_id, app, "2")
