"""The tenant's limits, met before a credential is created: its app management policy,
and the number of secrets an app open to personal Microsoft accounts may hold.

rotator reads the policy in force for the app (``Policy.Read.All``) and asks only for
what it allows: a shorter lifetime than the policy file wants, said in the log and the
audit trail, or no secret at all where password addition is blocked. Without
permission to read policies, Graph's refusal of the lifetime is the evidence, and the
same cap is found by asking again for shorter lifetimes; a refused request creates
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.domain.app_management import (
    LIFETIME_REFUSAL,
    TYPE_REFUSAL,
    CredentialRestrictions,
    password_room,
    refused_policy_id,
    shorter_lifetimes,
)
from rotator.domain.rotation import Rotation
from rotator.engine.context import EngineDeps, StepFailed, StepRetry, fence, log, record, step_error
from rotator.ports import DirectoryError, NewPassword


@dataclass(frozen=True, slots=True)
class LifetimeCap:
    """Why a new credential lives shorter than the policy file asks."""

    policy_id: str
    requested: timedelta
    allowed: timedelta
    how: str  # "read" (from the policy) or "refused" (from Graph's refusals)

    def message(self, source: str | None = None) -> str:
        where = f"app management policy '{self.policy_id}'" + (f" ({source})" if source else "")
        verb = ("allows at most" if self.how == "read"
                else "refused longer ones; Graph accepted")
        return (f"lifetime capped at {_days(self.allowed)} days instead of "
                f"{_days(self.requested)}: {where} {verb} {_days(self.allowed)} days")

    def details(self) -> dict[str, object]:
        return {"lifetime_capped_by_policy": self.policy_id,
                "requested_days": _days(self.requested), "allowed_days": _days(self.allowed),
                "cap_found_by": self.how}


def _days(delta: timedelta) -> int:
    return round(delta.total_seconds() / 86400)


async def read_restrictions(deps: EngineDeps, rotation: Rotation
                            ) -> CredentialRestrictions | None:
    """The policy in force, or ``None`` when there is none or it may not be read."""
    try:
        found = await deps.credential_policies.read(deps.directory, deps.now())
    except DirectoryError as exc:
        raise StepRetry(str(exc), retry_after=exc.retry_after) from None
    if found.refused is not None:
        refused = found.refused
        log.info("cannot read the app management policies; Graph's refusals will tell",
                 rotation_id=rotation.id, app_id=rotation.app_id, status=refused.status,
                 error=str(refused))
        return None
    assert found.policies is not None
    return found.policies.for_app(rotation.object_id)


def blocked_message(policy: str) -> str:
    return (f"{policy} blocks adding client secrets to this app, so rotator created "
            "nothing; rotate it to a certificate instead (kind = \"certificate\" in its "
            "[[app]] entry of the policy file)")


def refusal_of_type(exc: DirectoryError) -> StepFailed | None:
    if exc.code != TYPE_REFUSAL:
        return None
    policy_id = refused_policy_id(str(exc)) or "?"
    return StepFailed(f"{blocked_message(f'app management policy {policy_id!r}')} "
                      f"(Graph: {exc})")


async def add_password_within_policy(
    deps: EngineDeps, rotation: Rotation, display_name: str, start: datetime,
    lifetime: timedelta,
) -> tuple[NewPassword, LifetimeCap | None]:
    """``addPassword``; refused for its lifetime, ask again for shorter ones."""
    try:
        await fence(deps, rotation)
        return await deps.directory.add_password(rotation.object_id, display_name,
                                                 start + lifetime), None
    except DirectoryError as exc:
        if exc.code != LIFETIME_REFUSAL:
            raise
        first = exc
    policy_id = refused_policy_id(str(first)) or "?"
    log.info("Graph refused the secret's lifetime; asking for shorter ones",
             rotation_id=rotation.id, policy_id=policy_id, requested_days=_days(lifetime))
    for shorter in shorter_lifetimes(lifetime):
        try:
            await fence(deps, rotation)
            new = await deps.directory.add_password(rotation.object_id, display_name,
                                                    start + shorter)
        except DirectoryError as exc:
            if exc.code == LIFETIME_REFUSAL:
                continue
            raise
        return new, LifetimeCap(policy_id, lifetime, shorter, "refused")
    raise first


async def make_room_for_a_secret(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """At the signInAudience limit, remove expired secrets first (each one audited);
    with no expired one to remove, refuse before anything is created."""
    try:
        app = await deps.directory.get_application(rotation.app_id)
    except DirectoryError as exc:
        raise step_error(exc) from None
    if app is None:
        raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
    room = password_room(app, deps.now())
    audience = app.sign_in_audience
    if not room.fits:
        raise StepFailed(
            f"app {app.display_name} ({app.app_id}) has signInAudience '{audience}', which "
            f"allows at most {room.limit} client secrets; it holds {room.held} and not enough "
            "of them have expired, so rotator created nothing (it never removes a valid "
            "secret to make room). Remove one by hand, or rotate the app to a certificate")
    for old in room.remove:
        try:
            await fence(deps, rotation)
            await deps.directory.remove_password(rotation.object_id, old.key_id)
        except DirectoryError as exc:
            raise step_error(exc) from None
        ended = old.end.isoformat() if old.end else "?"
        rotation = await record(
            deps, rotation, rotation.with_changes(deps.now()),
            step="create",
            message=f"removed expired secret {old.key_id} (ended {ended}) to make room: "
                    f"signInAudience '{audience}' allows at most {room.limit} client secrets",
            details={"removed_expired_key_id": old.key_id, "sign_in_audience": audience or ""},
        )
    return rotation
