"""Which managed apps should start a rotation now — decided from the inventory, no I/O.

The daemon's reconcile pass feeds this the latest scan's inventory and the latest
rotation of each app; the answer is a list of candidates that the pass then
re-checks against a fresh read of the app before it records anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.domain.credentials import AppRegistration, CredentialKind
from rotator.domain.policies import RenewalRule, Snapshot, Verdict, default_kind, rotation_due
from rotator.domain.records import InventoryRow
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState

if TYPE_CHECKING:
    from rotator.config import Policy


@dataclass(frozen=True, slots=True)
class Candidate:
    app_id: str
    kind: CredentialKind
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Skipped:
    app_id: str
    reason: str


def apps_from_inventory(rows: Iterable[InventoryRow]) -> dict[str, AppRegistration]:
    grouped: dict[str, list[InventoryRow]] = defaultdict(list)
    for row in rows:
        if row.on_service_principal:
            # Reported and alerted, never rotated: rotator manages app registrations.
            continue
        grouped[row.app_id.lower()].append(row)
    return {
        app_id: AppRegistration(
            object_id=items[0].object_id,
            app_id=app_id,
            display_name=items[0].app_display_name,
            credentials=tuple(r.to_credential() for r in items),
        )
        for app_id, items in grouped.items()
    }


def latest_by_app(rotations: Iterable[Rotation]) -> dict[str, Rotation]:
    """The newest rotation of each app (any order in, newest by ``created_at`` out)."""
    latest: dict[str, Rotation] = {}
    for r in rotations:
        current = latest.get(r.app_id)
        if current is None or r.created_at > current.created_at:
            latest[r.app_id] = r
    return latest


def retired_but_listed(app: AppRegistration, last: Rotation | None) -> str | None:
    """The key id of a credential that ``last`` removed and ``app`` still lists, if any.

    Directory reads lag writes: a scan or a read answered by a replica that has not
    learned a finished rotation shows the old, due credential and not the new one. Such
    a view predates the rotation, so no rotation is planned from it (a second one would
    replace a credential that is already gone).
    """
    if last is None or last.state is not RotationState.COMPLETED or last.old_key_id is None:
        return None
    old = last.old_key_id.lower()
    return next((c.key_id for c in app.credentials if c.key_id.lower() == old), None)


def waits_for(last: Rotation | None, *, inventory_as_of: datetime, now: datetime
              ) -> str | None:
    """Why an app whose latest rotation is ``last`` waits whatever the inventory says
    (``None``: the inventory decides). Planning reads the inventory only of apps that
    do not wait."""
    if last is None:
        return None
    if last.active:
        return f"rotation {last.id} is in flight"
    if (
        last.state is RotationState.FAILED
        and last.next_attempt_at is not None
        and last.next_attempt_at > now
    ):
        return (f"backing off after a failed rotation until "
                f"{last.next_attempt_at.isoformat()}")
    if last.created_at >= inventory_as_of:
        return "rotated since the last scan; waiting for a scan"
    return None


def backoff_ends(latest_rotations: Iterable[Rotation], now: datetime) -> datetime | None:
    """When the first failed rotation's backoff ends (its app may be planned again)."""
    return min((r.next_attempt_at for r in latest_rotations
                if r.state is RotationState.FAILED and r.next_attempt_at is not None
                and r.next_attempt_at > now), default=None)


def due_candidates(
    policy: Policy,
    inventory: Sequence[InventoryRow],
    latest_rotations: dict[str, Rotation],
    *,
    inventory_as_of: datetime,
    now: datetime,
) -> tuple[list[Candidate], list[Skipped]]:
    """Managed apps whose credentials the policy says to renew, minus those that must wait.

    An app waits when it has a rotation in flight (the pass advances that one), when
    its last rotation failed and the failure backoff (``next_attempt_at``) has not
    passed, or when its last rotation began after ``inventory_as_of`` or the inventory
    still lists the credential that rotation retired — either way the inventory
    predates that rotation, so it says nothing about the app any more.
    """
    apps = apps_from_inventory(r for r in inventory if r.app_id.lower() in policy.apps)
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for app_id, app_policy in sorted(policy.apps.items()):
        app = apps.get(app_id)
        if app is None:
            skipped.append(Skipped(app_id, "not in the inventory (unknown app, or no credentials)"))
            continue
        last = latest_rotations.get(app_id)
        if last is not None:
            waiting = waits_for(last, inventory_as_of=inventory_as_of, now=now)
            if waiting is not None:
                skipped.append(Skipped(app_id, waiting))
                continue
            retired = retired_but_listed(app, last)
            if retired is not None:
                skipped.append(Skipped(app_id, (
                    f"the inventory still lists credential {retired}, which rotation "
                    f"{last.id} retired (a directory read that lagged); waiting for a scan")))
                continue
        kind = default_kind(app, now, configured=app_policy.credential)
        verdict = rotation_due(Snapshot(app, kind, RenewalRule(app_policy.renew_before_days)), now)
        if verdict is not None:
            candidates.append(Candidate(app_id, kind, verdict))
    return candidates, skipped
