"""The invariants rotation must never break, checked against the tenant and the vault.

For every managed app:

1. it keeps a valid credential (of the kind it is managed for);
2. its consumer secret's latest version holds a current credential of the app: the
   credential its ``key_id`` tag names exists, is valid now and is the one the value
   holds (the same secret text; for a certificate, the same thumbprint, which the
   ``thumbprint`` tag names too);
3. no orphans: every credential named ``rotator:<id>`` is the recorded new credential
   of a rotation that promoted it — or, when a rotation may be in flight, belongs to
   one still in flight — and a completed rotation's superseded credential is gone;
4. at most one rotation is in flight;
6. no superseded credential is removed before every consumer hook that wants the
   promoted event has taken it (its delivery recorded as delivered);
7. with ``retire_when = "unused"``, every removal records the rule that allowed it, and
   it is never the grace rule alone: evidence from the usage report, an admin decision,
   or the grace rule as a fallback that the rotation recorded (the report unreadable);

and 5. no secret value, slice of a private key or PEM private-key header appears in
any of the places given (database files or dumps, logs, command output).

The checks read the world through a small read-only view (:class:`TenantView`), so
the same code runs over the emulated tenant (:class:`EmulatedTenant`, here) and over
the engine tests' in-memory fakes. Each problem found is one sentence naming apps,
key ids and places; none ever contains a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rotator import certificate_material as certs
from rotator.domain.certificates import CERTIFICATE_CONTENT_TYPES
from rotator.domain.credentials import CredentialKind
from rotator.domain.hooks import EventType, HookDelivery
from rotator.domain.records import AuditEvent
from rotator.domain.rotation import Rotation, rotation_id_from_display_name, staging_name
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState

if TYPE_CHECKING:
    from rotator.config import Policy
    from rotator.emulator.tenant import Tenant

# States in which a rotation's new credential is the one consumers are meant to use.
PROMOTED_STATES = frozenset(
    {RotationState.PROMOTED, RotationState.RETIRING, RotationState.COMPLETED}
)
_KEY_HEADER = "-----BEGIN " "PRIVATE KEY-----"  # split so secret scanners let this file be
_KEY_FOOTER = "-----END " "PRIVATE KEY-----"
_PEM_KEY_MARKER = "PRIVATE " "KEY"


# ------------------------------------------------------------------ what is checked


@dataclass(frozen=True, slots=True)
class Managed:
    """An app the policy manages, as far as the invariants are concerned."""

    app_id: str
    secret_name: str  # the consumer secret; the staging one is ``<secret_name>-next``
    # None: the kind the consumer secret holds (either kind while there is none).
    kind: CredentialKind | None = None
    # The hooks that must have the promoted event before the old credential goes.
    promoted_hooks: tuple[str, ...] = ()
    # retire_when = "unused": a removal must be on evidence, a decision or a fallback.
    retire_unused: bool = False


def managed_apps(policy: Policy) -> list[Managed]:
    """Every app ``policy`` manages."""
    from rotator.domain.retirement import RetireRule

    return [Managed(app_id, p.secret_name, p.credential,
                    tuple(h.name for h in p.hooks if h.wants(EventType.PROMOTED)),
                    p.retire_when is RetireRule.UNUSED)
            for app_id, p in policy.apps.items()]


# ------------------------------------------------------------------ the read-only view


@dataclass(frozen=True, slots=True)
class SeenCredential:
    """One credential of an app as the checks see it."""

    key_id: str
    kind: CredentialKind
    display_name: str | None
    start: datetime | None
    end: datetime | None
    secret_text: str | None = None  # a client secret's value (emulated or fake tenants only)
    thumbprint: str | None = None  # a certificate's SHA-1, upper-case hex

    def valid_at(self, now: datetime) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class SeenApp:
    display_name: str
    credentials: tuple[SeenCredential, ...]


@dataclass(frozen=True, slots=True)
class SeenVersion:
    """One version of a vault secret, with its value."""

    value: str | None
    content_type: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True


class TenantView(Protocol):
    """What the checks read: the clock, apps and their credentials, vault secrets."""

    def now(self) -> datetime: ...

    def app(self, app_id: str) -> SeenApp | None:
        """The app registration, or None when there is none."""
        ...

    def versions(self, secret_name: str) -> Sequence[SeenVersion]:
        """Every version of a secret, oldest first; empty when there is no such secret."""
        ...


class HookRecords(Protocol):
    def for_rotation(self, rotation_id: str) -> Sequence[HookDelivery]: ...


class RotationRecords(Protocol):
    """Where rotations, their hook deliveries and their audit trail are recorded
    (the store)."""

    @property
    def hooks(self) -> HookRecords: ...

    def list_rotations(self, *, app_id: str | None = None) -> Sequence[Rotation]: ...

    def history(self, *, rotation_id: str | None = None) -> Sequence[AuditEvent]: ...


class EmulatedTenant:
    """:class:`TenantView` over the emulated tenant and its vault."""

    def __init__(self, tenant: Tenant) -> None:
        self._tenant = tenant

    def now(self) -> datetime:
        return datetime.now(UTC)

    def app(self, app_id: str) -> SeenApp | None:
        app = self._tenant.app_by_app_id(app_id)
        if app is None:
            return None
        # passwords() and keys() copy the lists under the tenant's lock.
        secrets = [
            SeenCredential(p.key_id, CredentialKind.SECRET, p.display_name, p.start, p.end,
                           secret_text=p.secret_text)
            for p in self._tenant.passwords(app_id)
        ]
        keys = [
            SeenCredential(k.key_id, CredentialKind.CERTIFICATE, k.display_name, k.start, k.end,
                           thumbprint=k.thumbprint.hex().upper())
            for k in self._tenant.keys(app_id)
        ]
        return SeenApp(app.display_name, tuple(secrets + keys))

    def versions(self, secret_name: str) -> list[SeenVersion]:
        return [SeenVersion(v.value, v.content_type, dict(v.tags), v.enabled)
                for v in self._tenant.vault.versions(secret_name)]


# ------------------------------------------------------------------ the checks


def check_tenant(
    tenant: Tenant,
    rotations: RotationRecords,
    apps: Iterable[Managed],
    *,
    allow_in_flight: bool = False,
    allow_no_consumer: bool = False,
    places: Mapping[str, str | bytes] | None = None,
    known_secrets: Iterable[str] = (),
) -> list[str]:
    """:func:`violations` of the emulated tenant and its vault."""
    return violations(EmulatedTenant(tenant), rotations, apps,
                      allow_in_flight=allow_in_flight, allow_no_consumer=allow_no_consumer,
                      places=places, known_secrets=known_secrets)


def violations(
    view: TenantView,
    rotations: RotationRecords,
    apps: Iterable[Managed],
    *,
    allow_in_flight: bool = False,
    allow_no_consumer: bool = False,
    places: Mapping[str, str | bytes] | None = None,
    known_secrets: Iterable[str] = (),
) -> list[str]:
    """What is wrong with the managed apps, their secrets and ``places``; empty when all
    is well.

    ``allow_in_flight``: a rotation may be in flight (a process died mid-rotation, or
    the check runs between steps): its new credential may exist before it is recorded
    or promoted. Without it, every ``rotator:<id>`` credential must be promoted.
    ``allow_no_consumer``: a consumer secret may not exist yet (nothing was promoted).
    ``places``: name -> content that must hold no secret value, private-key slice or
    private-key header. ``known_secrets``: further values to look for there (a secret
    already removed, a prefix every test secret starts with).
    """
    now = view.now()
    problems: list[str] = []
    material: set[str] = {s for s in known_secrets if s}
    for managed in apps:
        app = view.app(managed.app_id)
        if app is None:
            problems.append(f"{managed.app_id}: the app is gone")
            continue
        consumer = view.versions(managed.secret_name)
        staging = view.versions(staging_name(managed.secret_name))
        material.update(c.secret_text for c in app.credentials if c.secret_text)
        for version in (*consumer, *staging):
            material.update(_secret_material(version))
        latest = consumer[-1] if consumer else None
        problems += _consumer_problems(app, managed, latest, now,
                                       allow_no_consumer=allow_no_consumer)
        records = list(rotations.list_rotations(app_id=managed.app_id))
        problems += _record_problems(app, records, allow_in_flight=allow_in_flight)
        problems += _retirement_problems(app, managed, records, rotations)
    for place, content in (places or {}).items():
        problems += _leak_problems(place, content, material)
    return problems


def _kind_held(version: SeenVersion) -> CredentialKind:
    if version.content_type in CERTIFICATE_CONTENT_TYPES:
        return CredentialKind.CERTIFICATE
    return CredentialKind.SECRET


def _consumer_problems(app: SeenApp, managed: Managed, latest: SeenVersion | None,
                       now: datetime, *, allow_no_consumer: bool) -> list[str]:
    name = app.display_name
    kind = managed.kind or (_kind_held(latest) if latest is not None else None)
    # 1. a valid credential of the kind
    if not any(c.valid_at(now) for c in app.credentials if kind is None or c.kind is kind):
        return [f"{name}: no valid {kind or 'credential'}"]
    # 2. the consumer secret holds a current credential
    if latest is None:
        if allow_no_consumer:
            return []
        return [f"{name}: the consumer secret {managed.secret_name} does not exist"]
    where = f"{name}: the consumer secret {managed.secret_name}"
    if not latest.enabled:
        return [f"{where}: its latest version is disabled"]
    if latest.value is None:
        return [f"{where}: its latest version has no value"]
    if kind is not None and _kind_held(latest) is not kind:
        return [f"{where} does not hold a {kind} ({latest.content_type or 'no content type'})"]
    key_id = latest.tags.get("key_id")
    held = next((c for c in app.credentials if c.key_id == key_id and c.kind is kind), None)
    if held is None:
        return [f"{where} names {kind} {key_id}, which the app does not have"]
    if not held.valid_at(now):
        return [f"{where} holds {kind} {key_id}, which is not valid now"]
    if kind is CredentialKind.SECRET:
        if held.secret_text is not None and held.secret_text != latest.value:
            return [f"{where} names {key_id} but holds another value"]
        return []
    try:
        material = certs.load(SecretValue(latest.value), latest.content_type)
    except certs.CertificateError as exc:
        return [f"{where}: {exc}"]
    if held.thumbprint != material.thumbprint:
        return [f"{where} names {key_id} but holds certificate {material.thumbprint}"]
    if latest.tags.get("thumbprint", "").upper() != material.thumbprint:
        return [f"{where}: its thumbprint tag does not name the certificate it holds"]
    return []


def _record_problems(app: SeenApp, records: Sequence[Rotation], *,
                     allow_in_flight: bool) -> list[str]:
    name = app.display_name
    problems: list[str] = []
    by_id = {r.id: r for r in records}
    # 3. no orphans
    for cred in app.credentials:
        rid = rotation_id_from_display_name(cred.display_name)
        if rid is None:
            continue
        owner = by_id.get(rid)
        promoted = (owner is not None and owner.new_key_id == cred.key_id
                    and owner.state in PROMOTED_STATES)
        in_flight = allow_in_flight and owner is not None and owner.active
        if not (promoted or in_flight):
            state = owner.state if owner is not None else "no record"
            problems.append(f"{name}: orphaned {cred.kind} {cred.key_id} ({cred.display_name}, "
                            f"rotation {state})")
    present = {c.key_id for c in app.credentials}
    for r in records:
        if r.state is RotationState.COMPLETED and r.old_key_id in present:
            problems.append(f"{name}: superseded {r.kind} {r.old_key_id} was not retired "
                            f"(rotation {r.id} completed)")
    # 4. one rotation in flight at most
    active = [r.id for r in records if r.active]
    if len(active) > 1:
        problems.append(f"{name}: {len(active)} rotations in flight ({', '.join(active)})")
    return problems


def _retirement_problems(app: SeenApp, managed: Managed, records: Sequence[Rotation],
                         store: RotationRecords) -> list[str]:
    """6. hooks before removal; 7. the rule of each removal in "unused" mode."""
    if not managed.promoted_hooks and not managed.retire_unused:
        return []
    name = app.display_name
    present = {c.key_id for c in app.credentials}
    problems: list[str] = []
    for r in records:
        if r.old_key_id is None or r.old_key_id in present or r.state not in (
            RotationState.RETIRING, RotationState.COMPLETED
        ):
            continue  # nothing removed (yet) by this rotation
        delivered = {d.hook for d in store.hooks.for_rotation(r.id)
                     if d.event.type is EventType.PROMOTED and d.delivered}
        for hook in managed.promoted_hooks:
            if hook not in delivered:
                problems.append(f"{name}: superseded {r.kind} {r.old_key_id} was removed "
                                f"before hook {hook} took the promoted event (rotation {r.id})")
        if not managed.retire_unused:
            continue
        rules = [e.details["retired_by"] for e in store.history(rotation_id=r.id)
                 if isinstance(e.details.get("retired_by"), str)]
        if not rules:
            problems.append(f"{name}: {r.old_key_id} was removed with no rule recorded "
                            f"(rotation {r.id})")
        for rule in rules:
            fallback = rule.startswith("grace (fallback")
            if rule.startswith(("unused: ", "admin decision")) or (
                fallback and r.rule_fallback
            ):
                continue
            problems.append(f"{name}: {r.old_key_id} was removed by {rule!r} in unused mode "
                            f"without evidence or a recorded fallback (rotation {r.id})")
    return problems


# ------------------------------------------------------------------ leaks


def private_key_slices(value: str, content_type: str | None) -> list[str]:
    """Slices of the private key in a certificate bundle (PEM or base64 PKCS#12) to grep
    for: a copy of the bundle as stored, or of the key's base64 on one line, holds one."""
    stored = value.split(_KEY_HEADER)[-1] if _KEY_HEADER in value else value
    out = [stored.strip()[100:160]]
    try:
        pem = certs.to_pem(certs.load(SecretValue(value), content_type)).reveal()
    except certs.CertificateError:
        return [s for s in out if s]
    body = "".join(pem.split(_KEY_HEADER)[1].split(_KEY_FOOTER)[0].split())
    out += [body[40:100], body[-120:-60]]
    return [s for s in out if s]


def _secret_material(version: SeenVersion) -> list[str]:
    if not version.value:
        return []
    if version.content_type in CERTIFICATE_CONTENT_TYPES:
        return private_key_slices(version.value, version.content_type)
    return [version.value]


def _leak_problems(place: str, content: str | bytes, material: Iterable[str]) -> list[str]:
    if isinstance(content, bytes):
        found = any(m.encode() in content for m in material)
        header = _PEM_KEY_MARKER.encode() in content
    else:
        found = any(m in content for m in material)
        header = _PEM_KEY_MARKER in content
    problems = []
    if found:
        problems.append(f"a secret value is in {place}")
    if header:
        problems.append(f"a private key header is in {place}")
    return problems


def database_files(path: Path) -> dict[str, bytes]:
    """A SQLite database's files (the database, its WAL and shared memory, a rollback
    journal) that exist, by place name, for ``places``."""
    out: dict[str, bytes] = {}
    for candidate in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm",
                                                                       "-journal"))):
        if candidate.exists():
            out[f"the database file {candidate.name}"] = candidate.read_bytes()
    return out
