"""Posture findings: credentials that are risky even when nothing is about to expire. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rotator.domain.alerts import Alert, AlertKind, Severity
from rotator.domain.app_management import TenantPolicies, max_lifetime
from rotator.domain.credentials import USAGE_SECRET, CredentialKind
from rotator.domain.records import InventoryRow
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState

ROLE_PROBLEM = "lacks expected app role"
NO_END_IN_SIGHT_DAYS = 3652.0  # ten years
MAX_ACTIVE_SECRETS = 2


class FindingKind(StrEnum):
    LIFETIME_OVER_MAX = "lifetime_over_max"
    LIFETIME_OVER_APP_POLICY = "lifetime_over_app_policy"
    NO_END_IN_SIGHT = "no_end_in_sight"
    TOO_MANY_SECRETS = "too_many_secrets"
    SECRET_NOT_CERTIFICATE = "secret_not_certificate"
    MISSING_ROLES = "missing_roles"
    SP_CREDENTIAL_ON_OWN_APP = "sp_credential_on_own_app"
    NO_OWNER = "no_owner"
    FOREIGN_SP_SECRET = "foreign_sp_secret"
    FEDERATED_WITH_SECRET = "federated_with_secret"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    severity: Severity
    app_id: str
    app_name: str
    message: str
    key_id: str | None = None

    @property
    def key(self) -> str:
        return f"finding:{self.kind}:{self.app_id}:{self.key_id or '-'}"

    def to_alert(self) -> Alert:
        return Alert(
            key=self.key,
            kind=AlertKind.FINDING,
            severity=self.severity,
            subject=self.message,
            app_id=self.app_id,
            details={
                "finding": str(self.kind),
                "app_name": self.app_name,
                "key_id": self.key_id,
            },
        )


@dataclass(frozen=True, slots=True)
class RoleProblem:
    """A verify step that found the token without an expected app role."""

    app_id: str
    at: datetime
    message: str


@dataclass(frozen=True, slots=True)
class PostureRules:
    max_lifetime_days: int = 365
    prefer_certificates: bool = False
    # App ids or key ids of credentials on service principals that are known and wanted.
    expected_sp_credentials: frozenset[str] = frozenset()


def _label(row: InventoryRow) -> str:
    kind = "certificate" if row.kind is CredentialKind.CERTIFICATE else "secret"
    where = "service principal " if row.on_service_principal else ""
    return f"{kind} {row.key_id} of {where}{row.app_display_name!r} (app {row.app_id})"


def credential_findings(
    rows: Sequence[InventoryRow], rules: PostureRules, now: datetime
) -> list[Finding]:
    out: list[Finding] = estate_findings(rows, rules)
    by_app: dict[str, list[InventoryRow]] = defaultdict(list)
    for row in rows:
        if row.saml_signing:
            continue  # SAML signing certificates: their expiry is what counts
        if not row.on_service_principal:
            by_app[row.app_id].append(row)
        if row.start_at is not None and row.end_at is not None:
            lifetime = (row.end_at - row.start_at).total_seconds() / 86400
            if lifetime > rules.max_lifetime_days:
                out.append(Finding(
                    FindingKind.LIFETIME_OVER_MAX, Severity.WARNING, row.app_id,
                    row.app_display_name,
                    f"{_label(row).capitalize()} has a lifetime of {lifetime:.0f} days, over the "
                    f"policy's maximum of {rules.max_lifetime_days}",
                    row.key_id,
                ))
        if row.kind is CredentialKind.SECRET and (
            row.end_at is None or row.end_at - now > timedelta(days=NO_END_IN_SIGHT_DAYS)
        ):
            when = "no end date" if row.end_at is None else f"an end date in {row.end_at.year}"
            out.append(Finding(
                FindingKind.NO_END_IN_SIGHT, Severity.WARNING, row.app_id, row.app_display_name,
                f"{_label(row).capitalize()} has {when}: a leaked copy would work for a decade "
                "or more",
                row.key_id,
            ))
    for app_id, creds in sorted(by_app.items()):
        name = creds[0].app_display_name
        active = [
            c for c in creds
            if c.kind is CredentialKind.SECRET and c.to_credential().is_valid_at(now)
        ]
        if len(active) > MAX_ACTIVE_SECRETS:
            out.append(Finding(
                FindingKind.TOO_MANY_SECRETS, Severity.WARNING, app_id, name,
                f"App {name!r} ({app_id}) has {len(active)} active client secrets; more than "
                f"{MAX_ACTIVE_SECRETS} means old ones were never removed",
            ))
        if rules.prefer_certificates:
            newest = max(creds, key=lambda c: (c.start_at or c.end_at or now, c.key_id))
            if newest.kind is CredentialKind.SECRET:
                out.append(Finding(
                    FindingKind.SECRET_NOT_CERTIFICATE, Severity.INFO, app_id, name,
                    f"App {name!r} ({app_id}): its newest credential is a client secret; the "
                    "policy prefers certificates",
                    newest.key_id,
                ))
    return out


def estate_findings(rows: Sequence[InventoryRow], rules: PostureRules) -> list[Finding]:
    """Credentials on service principals, and credential holders nobody owns."""
    out: list[Finding] = []
    holders: dict[tuple[str, bool], InventoryRow] = {}
    for row in rows:
        holders.setdefault((row.app_id, row.on_service_principal), row)
        if not row.on_service_principal or row.saml_signing:
            continue
        if not row.foreign_app:
            if {row.app_id.lower(), row.key_id.lower()} & rules.expected_sp_credentials:
                continue
            out.append(Finding(
                FindingKind.SP_CREDENTIAL_ON_OWN_APP, Severity.CRITICAL, row.app_id,
                row.app_display_name,
                f"{_label(row).capitalize()} lives on the service principal, not on the app "
                "registration: it signs in for the app unseen in the app registration blade "
                "(a known way to keep access after a compromise); remove it, or list it in "
                "expected_sp_credentials if it is wanted",
                row.key_id,
            ))
        elif row.usage == USAGE_SECRET:
            out.append(Finding(
                FindingKind.FOREIGN_SP_SECRET, Severity.WARNING, row.app_id,
                row.app_display_name,
                f"{_label(row).capitalize()} was added in this tenant to the service principal "
                "of a multi-tenant app registered elsewhere; its publisher does not see it",
                row.key_id,
            ))
    out += _federated_with_secrets(rows)
    for (app_id, on_sp), row in sorted(holders.items()):
        if row.owners is not None and not row.owners:
            what = "Service principal" if on_sp else "App"
            out.append(Finding(
                FindingKind.NO_OWNER, Severity.WARNING, app_id, row.app_display_name,
                f"{what} {row.app_display_name!r} ({app_id}) holds credentials and has no "
                "owner to tell before they expire",
                "sp" if on_sp else None,
            ))
    return out


def _federated_with_secrets(rows: Sequence[InventoryRow]) -> list[Finding]:
    """Apps that sign in with a federated identity credential and still hold secrets."""
    secrets: dict[str, list[InventoryRow]] = defaultdict(list)
    for row in rows:
        if row.federated and not row.on_service_principal and row.kind is CredentialKind.SECRET:
            secrets[row.app_id].append(row)
    return [
        Finding(
            FindingKind.FEDERATED_WITH_SECRET, Severity.WARNING, app_id,
            held[0].app_display_name,
            f"App {held[0].app_display_name!r} ({app_id}) has a federated identity "
            f"credential and still {len(held)} client secret(s) "
            f"({', '.join(sorted(r.key_id for r in held))}); once its workloads sign in "
            "federated, remove the secret(s) rather than rotate them",
        )
        for app_id, held in sorted(secrets.items())
    ]


def policy_findings(rows: Sequence[InventoryRow], policies: TenantPolicies) -> list[Finding]:
    """Credentials that live longer than the tenant's app management policy in force for
    their app allows a new one to (Entra keeps credentials made before the policy)."""
    out: list[Finding] = []
    for row in rows:
        if row.start_at is None or row.end_at is None:
            continue
        restrictions = policies.for_app(row.object_id)
        limit = max_lifetime(restrictions, row.kind) if restrictions is not None else None
        if restrictions is None or limit is None:
            continue
        lifetime = row.end_at - row.start_at
        if lifetime <= limit:
            continue
        days = lifetime.total_seconds() / 86400
        out.append(Finding(
            FindingKind.LIFETIME_OVER_APP_POLICY, Severity.WARNING, row.app_id,
            row.app_display_name,
            f"{_label(row).capitalize()} has a lifetime of {days:.0f} days, over the "
            f"{limit.total_seconds() / 86400:g} days {restrictions.describe()} allows; "
            "rotate it to get one within the policy",
            row.key_id,
        ))
    return out


def role_findings(
    problems: Iterable[RoleProblem],
    rotations: Iterable[Rotation],
    managed: Mapping[str, object],
    app_names: Mapping[str, str],
) -> list[Finding]:
    """Managed apps whose latest verify found the token lacking a role, and no success since."""
    latest_problem: dict[str, RoleProblem] = {}
    for p in problems:
        app = p.app_id.lower()
        if app in managed and (app not in latest_problem or p.at > latest_problem[app].at):
            latest_problem[app] = p
    last_success: dict[str, datetime] = {}
    for r in rotations:
        if r.state in (RotationState.PROMOTED, RotationState.RETIRING, RotationState.COMPLETED):
            at = r.updated_at
            if r.app_id not in last_success or at > last_success[r.app_id]:
                last_success[r.app_id] = at
    out: list[Finding] = []
    for app, p in sorted(latest_problem.items()):
        if app in last_success and last_success[app] >= p.at:
            continue
        name = app_names.get(app, app)
        detail = p.message.strip().splitlines()[0][:300] if p.message.strip() else ROLE_PROBLEM
        out.append(Finding(
            FindingKind.MISSING_ROLES, Severity.CRITICAL, app, name,
            f"App {name!r} ({app}): the verify token lacks the expected app role(s) — admin "
            f"consent was never granted or was revoked ({detail})",
        ))
    return out
