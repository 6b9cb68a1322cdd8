"""Starting (or resuming) a rotation for one managed app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rotator.domain.backoff import step_retry_delay
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.policies import default_kind, superseded_credential
from rotator.domain.records import AuditNote, AuditOutcome
from rotator.domain.rotation import Rotation, RotationReason, new_rotation_id
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps, StepFailed, log
from rotator.ports import DirectoryError, RotationConflict, SecretStoreError


class Refusal(StrEnum):
    """Why a rotation was refused, which decides what the person asking should do."""

    REQUEST = "request"  # the request names something wrong: fix the command or the policy
    CONDITIONS = "conditions"  # the tenant or the vault said no for now: look, then retry


class RotationRefused(Exception):
    """The request cannot be carried out as asked; the message says what to do."""

    def __init__(self, message: str, *, refusal: Refusal = Refusal.CONDITIONS) -> None:
        super().__init__(message)
        self.refusal = refusal

    @property
    def exit_code(self) -> int:
        """For a command: 2 (usage) when the request itself is wrong, else 1 (failed)."""
        return 2 if self.refusal is Refusal.REQUEST else 1


@dataclass(frozen=True, slots=True)
class Plan:
    app: AppRegistration
    kind: CredentialKind
    old: Credential | None
    secret_name: str
    vault_url: str
    new_end: datetime
    resumed: Rotation | None = None

    def describe(self) -> list[str]:
        if self.resumed is not None:
            return [
                f"resume rotation {self.resumed.id} of app {self.app.app_id} "
                f"(state {self.resumed.state})"
            ]
        old = f"{self.old.kind} {self.old.key_id} (ends {self.old.end})" if self.old else "nothing"
        return [
            f"create a new {self.kind} on app {self.app.display_name} ({self.app.app_id}) "
            f"ending {self.new_end.isoformat()}",
            f"stage it in {self.vault_url} secret {self.secret_name}-next and verify it",
            f"promote it to {self.vault_url} secret {self.secret_name}",
            f"then retire {old}",
        ]


async def plan_rotation(
    deps: EngineDeps, app_id: str, *, requested_key_id: str | None = None
) -> Plan:
    app_id = app_id.strip().lower()
    policy = deps.app_policy(app_id)
    if policy is None:
        raise RotationRefused(
            f"app {app_id} is not managed by rotator: add an [[app]] table with "
            f'app_id = "{app_id}" to the policy file (ROTATOR_CONFIG) to manage it',
            refusal=Refusal.REQUEST,
        )
    app = await _read_app(deps, app_id)
    if app is None:
        raise RotationRefused(
            f"the tenant has no app registration with application (client) id {app_id}; "
            "check the app_id in the policy file",
            refusal=Refusal.REQUEST,
        )
    active = await deps.db(deps.store.active_rotation, app_id)
    requested = app.credential(requested_key_id.lower()) if requested_key_id else None
    if requested_key_id and requested is None and active is None:
        raise RotationRefused(
            f"app {app_id} has no credential with key id {requested_key_id}; "
            "`rotator scan` lists its credentials",
            refusal=Refusal.REQUEST,
        )
    kind = default_kind(app, deps.now(), configured=policy.credential, requested=requested)
    if kind is CredentialKind.CERTIFICATE and str(policy.key_type).upper().startswith("EC"):
        # azure-identity's CertificateCredential (what verify and consumers use) signs
        # client assertions with RS256 and refuses non-RSA keys.
        raise RotationRefused(
            f"app {app_id} asks for key_type = {policy.key_type!s}, but client assertions "
            "need an RSA key (azure-identity signs them with RS256); set key_type to "
            "RSA2048, RSA3072 or RSA4096 in the policy file"
        )
    now = deps.now()
    consumer_key_id: str | None = None
    try:
        current = await deps.vault_for(policy.vault_url, app_id, kind).get_secret(
            policy.secret_name)
    except (SecretStoreError, StepFailed) as exc:
        raise RotationRefused(f"could not read the consumer secret: {exc}") from None
    if current is not None:
        consumer_key_id = current.tags.get("key_id")
    old = superseded_credential(
        app, kind, now, requested_key_id=requested.key_id if requested else None,
        consumer_key_id=consumer_key_id,
    )
    return Plan(
        app=app,
        kind=kind,
        old=old,
        secret_name=policy.secret_name,
        vault_url=policy.vault_url,
        new_end=now + timedelta(days=policy.lifetime_days),
        resumed=active,
    )


PLAN_READ_ATTEMPTS = 3


async def _read_app(deps: EngineDeps, app_id: str) -> AppRegistration | None:
    """Read the app, waiting out a brief throttle or outage: nothing has started yet,
    so a few seconds of patience beats sending the admin back to the prompt."""
    for attempt in range(1, PLAN_READ_ATTEMPTS + 1):
        try:
            return await deps.directory.get_application(app_id)
        except DirectoryError as exc:
            if not exc.transient or attempt == PLAN_READ_ATTEMPTS:
                raise RotationRefused(f"could not read app {app_id}: {exc}") from None
            await deps.sleep(step_retry_delay(attempt, base_seconds=1, cap_seconds=10,
                                              retry_after=exc.retry_after))
    return None  # unreachable: the loop returns or raises


async def start_rotation(
    deps: EngineDeps, plan: Plan, *, reason: RotationReason, retire_now: bool = False,
    requested_by: Mapping[str, str] | None = None,
) -> Rotation:
    """Record a pending rotation, or return the one already in flight for this app.

    ``requested_by`` (who asked through the API) goes into the plan's audit event.

    The database's partial unique index is what makes "one active rotation per
    app" hold across processes; losing that race means resuming the winner.
    """
    if plan.resumed is not None:
        return plan.resumed
    now = deps.now()
    rotation = Rotation(
        id=new_rotation_id(),
        app_id=plan.app.app_id,
        object_id=plan.app.object_id,
        kind=plan.kind,
        state=RotationState.PENDING,
        reason=reason,
        secret_name=plan.secret_name,
        vault_url=plan.vault_url,
        created_at=now,
        updated_at=now,
        old_key_id=plan.old.key_id if plan.old else None,
        retire_now=retire_now,
    )
    deps.checkpoint(f"before:db.{RotationState.PENDING}")
    try:
        created = await deps.db(deps.store.create_rotation, rotation, audit=AuditNote(
            "plan", AuditOutcome.OK, f"rotation of {plan.kind} planned ({reason})",
            {"old_key_id": rotation.old_key_id or "", "secret_name": rotation.secret_name,
             **(requested_by or {})},
        ))
    except RotationConflict:
        existing = await deps.db(deps.store.active_rotation, plan.app.app_id)
        if existing is None:  # it finished in between; the caller may try again
            raise RotationRefused(
                f"another rotation of app {plan.app.app_id} just finished; run the command again"
            ) from None
        return existing
    deps.checkpoint(f"after:db.{RotationState.PENDING}")
    log.info("rotation planned", rotation_id=created.id, app_id=created.app_id, reason=str(reason))
    return created
