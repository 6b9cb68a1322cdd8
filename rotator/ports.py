"""The edges of the core: what the engine, alerts and report need from the world.

Adapters in ``rotator.adapters`` implement these against the real SDKs and the
database; tests implement them with in-memory fakes. Nothing here imports an SDK
or a database driver, and the values that cross these edges live in ``rotator.domain``.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rotator.domain.alerts import Alert, Delivery
from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential, CredentialSource
from rotator.domain.hooks import HookDelivery, HookEvent
from rotator.domain.records import (
    AuditEvent,
    AuditNote,
    AuditOutcome,
    DeltaLinks,
    InventoryRow,
    ScanRun,
    ScanStatus,
)
from rotator.domain.rotation import Rotation
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState

if TYPE_CHECKING:
    from rotator.config.hooks import HookPolicy


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
    # A delta query's ``@removed`` entry: the object (``raw_id``) is gone from the tenant.
    removed: bool = False


@dataclass(slots=True)
class DeltaRound:
    """What one round of a delta query told besides its objects."""

    # The link to ask for the changes after this round; set once its last page is read.
    delta_link: str | None = None
    requests: int = 0


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
    def resync_required(self) -> bool:
        """A delta link Graph no longer knows: expired, or its sync state is gone."""
        return self.status == 410 or (self.code or "").lower() in (
            "syncstatenotfound", "resyncrequired", "syncstateinvalid")

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
    def list_applications(self) -> AsyncIterator[ScanItem]:
        """Every app registration, with its user owners (``AppRegistration.owners``)."""
        ...

    def list_service_principals(self) -> AsyncIterator[ScanItem]:
        """Every service principal with its own credentials and user owners, as
        ``AppRegistration`` values whose ``source`` is ``servicePrincipal``. Read for
        the inventory and alerts only: nothing rotates them."""
        ...

    async def track_changes(self, resource: str) -> str:
        """A delta link from now for ``resource`` ("applications" or "servicePrincipals"):
        following it later lists what changed since this call."""
        ...

    def list_changes(self, resource: str, link: str, into: DeltaRound
                     ) -> AsyncIterator[ScanItem]:
        """The objects changed since ``link`` was issued (deleted ones as ``removed``
        items); ``into`` gets the next link and the request count. A link Graph no longer
        knows raises ``DirectoryError`` whose ``resync_required`` is true."""
        ...

    def list_requests(self) -> int:
        """How many listing pages this directory has requested so far."""
        ...

    async def get_application(self, app_id: str) -> AppRegistration | None:
        """By application (client) id; ``None`` when the tenant has no such app."""
        ...

    async def federated_app_ids(self) -> set[str]:
        """Application (client) ids of the app registrations that hold at least one
        federated identity credential (lower case), read in a few requests however many
        apps the tenant holds."""
        ...

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        """The app management policy in force for the app: its own enabled policy, else
        the enabled tenant default; ``None`` when neither restricts it. Raises
        ``DirectoryError`` (403) when rotator may not read policies (``Policy.Read.All``)."""

    async def list_credential_policies(self) -> TenantPolicies:
        """Every app management policy in force, read in a few requests however many apps
        the tenant holds: the enabled default, and each enabled policy's applications.
        Raises ``DirectoryError`` (403) without ``Policy.Read.All``."""
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


# ----------------------------------------------------------------- certificate store (Key Vault)


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """One Key Vault certificate version's public side: never its private key.

    ``cer`` is the DER certificate (empty while a create is still pending);
    ``content_type`` is what the backing secret of the same name and version serves
    (``application/x-pkcs12`` or ``application/x-pem-file``).
    """

    name: str
    version: str
    enabled: bool
    cer: bytes
    content_type: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    created_on: datetime | None = None
    expires_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class SelfSignedRequest:
    """What Key Vault is asked to make: an exportable RSA key and a self-signed certificate."""

    subject: str
    key_size: int
    validity_months: int
    content_type: str


class CertificateStore(Protocol):
    """Key Vault certificate objects (a certificate, its key, its backing secret).

    Failures raise :class:`SecretStoreError`, as the secret store's do.
    """

    async def import_certificate(
        self, name: str, bundle: SecretValue, *, content_type: str, tags: Mapping[str, str],
        enabled: bool = True,
    ) -> StoredCertificate:
        """A new version of ``name`` from ``bundle`` (base64 PKCS#12 or PEM with the key);
        the backing secret serves it as ``content_type``."""
        ...

    async def create_self_signed(
        self, name: str, request: SelfSignedRequest, *, tags: Mapping[str, str]
    ) -> StoredCertificate:
        """Key Vault makes the key pair and certificate as a new version of ``name``; waits
        for the create operation to finish."""
        ...

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        """Latest (or the given) version; ``None`` if the certificate does not exist."""
        ...

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        """Every version (without ``cer``); empty if the certificate does not exist."""
        ...

    async def disable_version(self, name: str, version: str) -> None: ...

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        """The backing secret of one version: the certificate with its private key (when
        the key is exportable), as its content type says. Read only to sign or to copy."""
        ...


# ----------------------------------------------------------------- token probe (Entra)


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """The result of one client-credentials token request with a candidate credential."""

    ok: bool
    claims: Mapping[str, object] = field(default_factory=dict)
    error_code: str | None = None  # e.g. "AADSTS7000215"
    message: str | None = None
    status: int | None = None  # HTTP status of a refusal, when the endpoint answered
    retry_after: float | None = None  # seconds the endpoint asked to wait (429, 503)


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


# ----------------------------------------------------------------- credential usage (Graph beta)


class UsageReportUnavailable(Exception):
    """The credential usage report cannot be read for this app (403 without
    AuditLog.Read.All, 404, a shape rotator does not understand): fall back to the grace
    rule. Transient failures (429, 5xx, network) are :class:`DirectoryError` instead."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UsageReport(Protocol):
    async def last_sign_ins(self, app_id: str) -> Mapping[str, datetime | None]:
        """``appCredentialSignInActivities`` of the app: key id -> last sign-in (a key
        the report does not list is absent)."""
        ...


# ----------------------------------------------------------------- consumer hooks


class HookError(Exception):
    """A hook that did not take its event: the words are safe to record (no secret)."""


class HookSender(Protocol):
    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        """Deliver ``event`` once (POST it, or run the command); raise :class:`HookError`
        unless the receiver took it (a 2xx answer, or exit status 0 in time)."""
        ...


class HookStore(Protocol):
    """Which event went (or is to go) to which hook; recorded before it is sent."""

    def ensure(self, hook: str, event: HookEvent, rotation_id: str, now: datetime
               ) -> HookDelivery:
        """The delivery of ``event`` to ``hook``, inserted as pending if not yet known."""
        ...

    def mark_delivered(self, hook: str, event_id: str, now: datetime) -> HookDelivery: ...

    def mark_failed(self, hook: str, event_id: str, now: datetime, error: str,
                    next_attempt_at: datetime) -> HookDelivery: ...

    def for_rotation(self, rotation_id: str) -> list[HookDelivery]: ...

    def due(self, now: datetime, limit: int) -> list[HookDelivery]:
        """Pending deliveries whose next attempt is due, oldest first."""
        ...

    def pending(self, limit: int) -> list[HookDelivery]:
        """Every delivery not yet taken, due or not, oldest first."""
        ...


# ----------------------------------------------------------------- the record (SQL)


class StoreError(Exception):
    """Base of the store's own errors."""


class RotationConflict(StoreError):
    """The app already has an active rotation (the database refused a second one)."""

    def __init__(self, app_id: str, active_rotation_id: str | None) -> None:
        super().__init__(
            f"app {app_id} already has an active rotation"
            + (f" ({active_rotation_id})" if active_rotation_id else "")
        )
        self.app_id = app_id
        self.active_rotation_id = active_rotation_id


class StaleRotation(StoreError):
    """The rotation changed (state or lease) since the caller read it; re-read and decide again."""

    def __init__(
        self,
        rotation_id: str,
        expected_state: RotationState,
        actual_state: RotationState | None,
        lease_owner: str | None,
    ) -> None:
        if actual_state is None:
            detail = "it does not exist"
        elif actual_state != expected_state:
            detail = f"it is {actual_state}"
        else:
            detail = f"its lease is held by {lease_owner}"
        super().__init__(
            f"rotation {rotation_id} was expected in state {expected_state} but {detail}"
        )
        self.rotation_id = rotation_id
        self.expected_state = expected_state
        self.actual_state = actual_state
        self.lease_owner = lease_owner


class AlertStore(Protocol):
    """Which alert went (or is to go) to which channel; insert-then-send, claims per row."""

    def record(self, channel: str, alerts: Iterable[Alert], now: datetime) -> int:
        """Insert the alerts not yet known for ``channel``; returns how many were new."""
        ...

    def has_due(self, channel: str, now: datetime) -> bool: ...

    def claim(
        self,
        channel: str,
        owner: str,
        now: datetime,
        *,
        lease: timedelta,
        limit: int,
        digest_key: str | None = None,
        urgent_only: bool = False,
    ) -> tuple[str, list[Delivery]]:
        """Claim up to ``limit`` due alerts of ``channel`` (or its digest row
        ``digest_key``; or only the urgent ones, ``domain.alerts.URGENT_KEYS``); returns
        the claim token and the claimed rows."""
        ...

    def ensure_digest(self, channel: str, period: str, now: datetime) -> str:
        """The digest row of ``channel`` for ``period`` exists afterwards; returns its key."""
        ...

    def mark_sent(self, ids: Sequence[int], token: str, now: datetime) -> int: ...

    def release(self, ids: Sequence[int], token: str) -> int:
        """Give claimed rows back untouched (not attempted)."""
        ...

    def mark_failed(
        self,
        ids: Sequence[int],
        token: str,
        now: datetime,
        error: str,
        *,
        max_attempts: int,
        backoff: Callable[[int], timedelta],
    ) -> int:
        """Count a failed attempt: back to pending after ``backoff(attempts)``, or failed."""
        ...

    def deliveries(
        self, *, channel: str | None = None, include_digests: bool = False
    ) -> list[Delivery]: ...

    def role_problems(self, since: datetime, needle: str) -> list[tuple[str, datetime, str]]:
        """(app id, when, text) of audit events and rotations whose text contains ``needle``."""
        ...

    def recent_scans(self, since: datetime, limit: int) -> list[ScanRun]:
        """Scans started since ``since``, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class ScanTurn:
    """A replica's turn to scan the tenant, taken from the shared record."""

    started_at: datetime
    # A turn taken over from a replica that stopped renewing it (it died or stalled):
    # who that was, and the scan it left running, if it had said which.
    abandoned_by: str | None = None
    abandoned_scan_id: str | None = None


class Coordination(Protocol):
    """What replicas sharing one database agree on: whose turn it is to scan the
    tenant, and the tenant's Graph write budget. Times come from one clock (the
    database's, where several replicas share it), so replicas' clocks never need to agree."""

    @property
    def shared(self) -> bool:
        """Whether other processes can share this record (PostgreSQL), or this process
        is its only user (SQLite): a budget only this process draws from is better kept
        in memory."""
        ...

    def take_scan_turn(
        self, owner: str, *, interval_seconds: float, lease_seconds: float,
        early_seconds: float = 0.0,
    ) -> ScanTurn | None:
        """The turn to scan, if no turn began within the last ``interval_seconds``
        (less ``early_seconds``) and none is held, or if the holder of the last one
        stopped renewing it; ``None`` otherwise. Held for ``lease_seconds``."""
        ...

    def renew_scan_turn(self, owner: str, *, lease_seconds: float,
                        scan_id: str | None = None) -> bool:
        """Keep the turn (and say which scan it runs); ``False`` when it was taken over."""
        ...

    def end_scan_turn(self, owner: str, *, done: bool) -> None:
        """Give the turn back: ``done`` counts it as this interval's scan; otherwise
        (a stop part-way) the next replica to ask may scan at once."""
        ...

    def reserve_write(self, *, rate_per_minute: float, burst: float) -> float:
        """Reserve one Graph write of the shared budget; returns the seconds to wait
        before making it (0 when it may go now)."""
        ...


class Store(Protocol):
    """Scans, inventory, rotations with their leases, and the audit trail.

    Each method is one short transaction returning frozen values. Rotation writes
    are compare-and-set on the recorded state and lease, so two replicas acting on
    one stale read cannot both win. Nothing stored is ever a secret value.
    """

    @property
    def alerts(self) -> AlertStore:
        """Alert delivery state, kept beside the rest."""
        ...

    @property
    def hooks(self) -> HookStore:
        """Consumer hook delivery state, kept beside the rest."""
        ...

    @property
    def coordination(self) -> Coordination:
        """Scan turns and the write budget replicas share, kept beside the rest."""
        ...

    def ping(self) -> None:
        """Raises when the database does not answer."""
        ...

    def close(self) -> None: ...

    # scans and inventory
    def start_scan(self, now: datetime) -> str: ...

    def record_inventory(self, scan_id: str, rows: Iterable[InventoryRow], now: datetime) -> int:
        """Upsert what one page of the listing saw; returns how many rows were written."""
        ...

    def finish_scan(
        self,
        scan_id: str,
        now: datetime,
        *,
        status: ScanStatus,
        apps_seen: int,
        credentials_seen: int,
        errors: Sequence[tuple[str | None, str]],
        error: str | None = None,
        mode: str = "full",
        graph_requests: int | None = None,
        apps_changed: int | None = None,
        delta_links: Mapping[str, str] | None = None,
    ) -> ScanRun:
        """Close a running scan and prune the inventory it proved stale (a full one);
        store ``delta_links`` with it when it succeeded."""
        ...

    def apply_changes(self, scan_id: str, rows: Sequence[InventoryRow],
                      replaced: Sequence[tuple[str, CredentialSource]], now: datetime,
                      managed: Collection[str] = ()) -> int:
        """An incremental scan's changes in one transaction: the credentials of the
        ``replaced`` objects (object id, source) go, then ``rows`` are written; app rows
        are marked managed when their app id is in ``managed``."""
        ...

    def delta_links(self) -> DeltaLinks | None:
        """Where the next incremental scan goes on from, if a full scan stored it."""
        ...

    def get_scan(self, scan_id: str) -> ScanRun | None: ...

    def last_scan(self) -> ScanRun | None: ...

    def last_successful_scan(self) -> ScanRun | None: ...

    def last_finished_scan(self) -> ScanRun | None:
        """The scan that finished last and says something about the tenant: succeeded,
        partial or failed (one interrupted part-way says nothing)."""
        ...

    def inventory(
        self,
        *,
        within_days: float | None = None,
        now: datetime | None = None,
        app_id: str | None = None,
        app_ids: Iterable[str] | None = None,
    ) -> list[InventoryRow]:
        """Soonest expiry first; ``app_id`` or ``app_ids`` keep only those apps."""
        ...

    def each_credential(self) -> Iterator[InventoryRow]:
        """Every credential of the inventory, in no order, read in batches: the caller
        that only counts or renders never holds the whole inventory (240,000 rows at
        100,000 apps). Close the iterator, or exhaust it, to end the read."""
        ...

    def app_names(self, app_ids: Iterable[str]) -> dict[str, str]:
        """Display names from the inventory, by lower-case application (client) id; an
        app the inventory does not hold is left out."""
        ...

    # rotations
    def create_rotation(self, r: Rotation, *, audit: AuditNote | None = None) -> Rotation:
        """Insert a new rotation (and its audit event); raises :class:`RotationConflict`
        if its app already has an active one."""
        ...

    def get_rotation(self, rotation_id: str) -> Rotation | None: ...

    def active_rotation(self, app_id: str) -> Rotation | None: ...

    def list_rotations(
        self,
        *,
        states: Iterable[RotationState] | None = None,
        app_id: str | None = None,
        limit: int | None = None,
    ) -> list[Rotation]: ...

    def latest_rotations(self, app_ids: Iterable[str]) -> dict[str, Rotation]:
        """The newest rotation of each of ``app_ids`` that has one, by lower-case app id."""
        ...

    def rotations_marker(self) -> Hashable:
        """A cheap value that changes whenever a rotation starts or ends (or an ended
        one changes), and not when an active one only moves a step."""
        ...

    def save_rotation(
        self, r: Rotation, *, expected_state: RotationState, audit: AuditNote | None = None
    ) -> Rotation:
        """Write ``r`` if the stored one is still in ``expected_state`` and its lease
        allows it, with ``audit`` in the same transaction; raises :class:`StaleRotation`."""
        ...

    def due_rotations(self, now: datetime, limit: int, offset: int = 0) -> list[Rotation]:
        """Active rotations whose next attempt is due and whose lease is free, in a
        stable order (``offset`` pages through them)."""
        ...

    # leases
    def claim(
        self, rotation_id: str, owner: str, now: datetime, lease_seconds: float
    ) -> Rotation | None:
        """Take (or extend) the lease; ``None`` when another owner holds it."""
        ...

    def take_over(
        self, rotation_id: str, dead_owner: str, owner: str, now: datetime, lease_seconds: float
    ) -> Rotation | None: ...

    def release(self, rotation_id: str, owner: str) -> bool: ...

    # audit
    def append_audit(
        self,
        at: datetime,
        step: str,
        outcome: AuditOutcome,
        message: str,
        *,
        rotation_id: str | None = None,
        app_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent: ...

    def history(
        self,
        *,
        app_id: str | None = None,
        rotation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 500,
    ) -> list[AuditEvent]:
        """The latest ``limit`` matching events (at or after ``since``), oldest first."""
        ...


# ----------------------------------------------------------------- API callers (Entra tokens)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an API request, from a validated access token."""

    client_id: str  # the calling app: ``appid`` in a v1 token, ``azp`` in a v2 one
    object_id: str | None  # ``oid``: the caller's service principal (or user)
    tenant_id: str
    roles: frozenset[str] = frozenset()

    def audit_details(self) -> dict[str, str]:
        """What the audit trail records about who asked."""
        return {"requested_by_client_id": self.client_id,
                "requested_by_object_id": self.object_id or ""}


class TokenRejected(Exception):
    """The bearer token is not one this API accepts; ``error`` is the RFC 6750 code."""

    def __init__(self, description: str, *, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class TokenKeysUnavailable(Exception):
    """The tenant's signing keys could not be read, so no token can be judged now."""


class AccessTokenValidator(Protocol):
    async def validate(self, token: str) -> Caller:
        """The caller a token names, after checking signature, issuer, audience, lifetime
        and tenant; raises :class:`TokenRejected` or :class:`TokenKeysUnavailable`."""
        ...
