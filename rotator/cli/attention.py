"""What needs the admin, most urgent first: the answer `rotator status` gives.

Pure: it is handed the policy, the store's rotations, inventory and last scans, and
the time, and reads nothing itself, so every rule here is tested without a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rotator.domain.records import InventoryRow, ScanRun, ScanStatus
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.plan import due_candidates, latest_by_app

if TYPE_CHECKING:
    from rotator.config import Policy


class Need(StrEnum):
    """Why a row is on the list, in the order they are shown."""

    FAILED = "failed"  # the app's latest rotation failed: nothing will fix itself
    DUE = "due"  # the policy says renew now, and no rotation is planned
    UNSEEN = "unseen"  # a managed app the last scan did not find
    IN_FLIGHT = "in_flight"  # a rotation is on its way (retrying ones first)


@dataclass(frozen=True, slots=True)
class Item:
    need: Need
    app_id: str
    display_name: str
    state: str
    since: datetime | None
    next_attempt_at: datetime | None
    detail: str
    what_to_do: str
    rotation_id: str | None = None
    # Something the admin should act on (or watch), rather than only know about.
    actionable: bool = True
    # For ordering within a kind: the sooner, the more urgent.
    deadline: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "need": str(self.need),
            "app_id": self.app_id,
            "display_name": self.display_name,
            "state": self.state,
            "since": _iso(self.since),
            "next_attempt_at": _iso(self.next_attempt_at),
            "detail": self.detail,
            "what_to_do": self.what_to_do,
            "rotation_id": self.rotation_id,
        }


@dataclass(frozen=True, slots=True)
class ScanHealth:
    healthy: bool
    summary: str  # one line: status, age, and what is wrong if anything
    age: timedelta | None


@dataclass(frozen=True, slots=True)
class Attention:
    items: list[Item]
    scan: ScanHealth
    # Failed rotations that a later rotation of the same app has since replaced.
    superseded_failures: int


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def age_text(delta: timedelta) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``: short enough for a table cell."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def scan_health(
    last: ScanRun | None, last_good: ScanRun | None, *, interval: timedelta, now: datetime
) -> ScanHealth:
    """The last scan's status and age, and whether the inventory can be trusted."""
    if last is None:
        return ScanHealth(False, "no scan has run yet: run `rotator scan`", None)
    at = last.finished_at or last.started_at
    age = now - at
    ago = age_text(age)
    counts = (f"incremental: {last.apps_changed or 0} changed" if last.mode == "delta"
              else f"{last.apps_seen} apps, {last.credentials_seen} credentials")
    if last.status is ScanStatus.RUNNING:
        running = now - last.started_at
        if running > 2 * interval:
            return ScanHealth(False, f"running for {age_text(running)}, longer than two scan "
                              "intervals: it may have died; run `rotator scan`", age)
        return ScanHealth(True, f"running for {age_text(running)}", age)
    if last.status in (ScanStatus.FAILED, ScanStatus.INTERRUPTED):
        good = (f"; the inventory is from the scan {age_text(now - last_good.started_at)} ago"
                if last_good is not None else "; there is no good inventory yet")
        if last.status is ScanStatus.INTERRUPTED:
            return ScanHealth(False, f"interrupted {ago} ago, when the service stopped after "
                              f"reading {counts}{good}; is `rotator serve` running?", age)
        return ScanHealth(False, f"failed {ago} ago: {last.error or 'no detail'}{good}", age)
    if age > 2 * interval:
        return ScanHealth(False, f"{last.status} {ago} ago ({counts}): stale, older than two "
                          f"scan intervals ({age_text(2 * interval)}); is `rotator serve` "
                          "running?", age)
    if last.status is ScanStatus.PARTIAL:
        return ScanHealth(False, f"partial {ago} ago ({counts}): {last.error_count} app(s) "
                          "could not be read; see `rotator scan`", age)
    return ScanHealth(True, f"{last.status} {ago} ago ({counts})", age)


_PERMISSION_WORDS = ("authorization", "forbidden", "insufficient privileges", "403",
                     "not an owner", "accessdenied", "access denied")


def failure_advice(r: Rotation, *, managed: bool, now: datetime) -> str:
    """What an admin can do about a failed rotation, in one sentence."""
    if not managed:
        return ("the app is no longer in the policy file, so nothing retries it; "
                f"see `rotator history --rotation {r.id}`")
    error = (r.last_error or "").lower()
    if any(word in error for word in _PERMISSION_WORDS):
        cause = "grant rotator the access it lacks (README: Permissions)"
    elif "vault" in error:
        cause = f"check rotator's access to Key Vault {r.vault_url}"
    else:
        cause = f"find the cause in `rotator history --rotation {r.id}`"
    retry = (f"; the service tries again after {r.next_attempt_at:%Y-%m-%d %H:%M} UTC"
             if r.next_attempt_at is not None and r.next_attempt_at > now else "")
    return f"{cause}, then run `rotator rotate --app {r.app_id}`{retry}"


def _in_flight_item(r: Rotation, name: str, now: datetime) -> Item:
    next_at = r.next_attempt_at
    if r.state is RotationState.PROMOTED and r.held:
        # retire_when = "unused": the usage report has not shown the consumers moving.
        detail = r.held + ("; overdue (past retire_max_wait_hours)" if r.held_overdue else "")
        todo = (f"make the old credential's consumers read {r.secret_name} again, or run "
                f"`rotator rotate --app {r.app_id} --retire-now` to retire it anyway")
        return Item(Need.IN_FLIGHT, r.app_id, name, str(r.state), r.updated_at, next_at,
                    detail, todo, r.id, actionable=r.held_overdue,
                    deadline=now if r.held_overdue else None)
    if r.state is RotationState.PROMOTED and r.retire_after is not None and not r.retire_now:
        detail = f"old credential retires after {r.retire_after:%Y-%m-%d %H:%M} UTC"
        next_at = next_at or r.retire_after
        todo = f"nothing (or `rotator rotate --app {r.app_id} --retire-now` to retire it now)"
    elif r.last_error:
        detail = f"retrying after: {r.last_error}"
        todo = f"watch it; if it keeps failing, see `rotator history --rotation {r.id}`"
    else:
        detail = ""
        todo = "nothing: it is on its way"
    if r.lease_owner and r.lease_expires_at and r.lease_expires_at > now:
        detail = f"{detail}; " if detail else ""
        detail += f"worked on by {r.lease_owner}"
    # One that is retrying after an error comes before those that are simply on their way.
    return Item(Need.IN_FLIGHT, r.app_id, name, str(r.state), r.updated_at, next_at, detail,
                todo, r.id, actionable=bool(r.last_error),
                deadline=now if r.last_error else None)


def _soonest_end(rows: Sequence[InventoryRow]) -> datetime | None:
    ends = [r.end_at for r in rows if r.end_at is not None]
    return min(ends) if ends else None


def needs_attention(
    *,
    policy: Policy,
    in_flight: Sequence[Rotation],
    recent: Sequence[Rotation],
    inventory: Sequence[InventoryRow],
    names: Mapping[str, str],
    last_scan: ScanRun | None,
    last_good_scan: ScanRun | None,
    now: datetime,
) -> Attention:
    """Everything that needs the admin, most urgent first.

    ``recent`` are the latest rotations (newest first, any state), from which the
    latest of each app decides whether a failure still stands; ``inventory`` holds
    at least the managed apps' rows; ``names`` maps app ids to display names.
    """

    def name_of(app_id: str) -> str:
        return names.get(app_id.lower(), "")

    interval = timedelta(minutes=policy.daemon.scan_interval_minutes)
    health = scan_health(last_scan, last_good_scan, interval=interval, now=now)
    latest = latest_by_app([*recent, *in_flight])
    items: list[Item] = []

    superseded = 0
    for r in recent:
        if r.state is not RotationState.FAILED:
            continue
        if latest[r.app_id].id != r.id:
            superseded += 1
            continue
        items.append(Item(
            Need.FAILED, r.app_id, name_of(r.app_id), str(r.state), r.finished_at or r.updated_at,
            r.next_attempt_at, r.last_error or "no error recorded",
            failure_advice(r, managed=policy.for_app(r.app_id) is not None, now=now), r.id,
        ))

    # The inventory planning trusts: the last scan unless it failed (or still runs).
    planning = (last_scan if last_scan is not None
                and last_scan.status in (ScanStatus.SUCCEEDED, ScanStatus.PARTIAL)
                else last_good_scan)
    if planning is not None:
        # Service principals' own credentials are never rotated, so never due.
        managed_rows = [r for r in inventory
                        if r.app_id.lower() in policy.apps and not r.on_service_principal]
        candidates, _ = due_candidates(policy, managed_rows, latest,
                                       inventory_as_of=planning.started_at, now=now)
        by_app: dict[str, list[InventoryRow]] = {}
        for row in managed_rows:
            by_app.setdefault(row.app_id.lower(), []).append(row)
        failing = {i.app_id for i in items}
        for c in candidates:
            if c.app_id in failing:
                continue  # its failure is listed, with what to do about it
            rows = [r for r in by_app.get(c.app_id, []) if r.kind is c.kind]
            items.append(Item(
                Need.DUE, c.app_id, name_of(c.app_id), "not planned", None, None,
                c.verdict.message,
                f"`rotator serve` starts it on its next pass, or run "
                f"`rotator rotate --app {c.app_id}`",
                deadline=_soonest_end(rows),
            ))
        for app_id in sorted(set(policy.apps) - set(by_app)):
            items.append(Item(
                Need.UNSEEN, app_id, name_of(app_id), "not found", None, None,
                "the last scan found no credentials for this managed app",
                "check the app id in the policy file, and that rotator can read the app",
            ))

    items.extend(_in_flight_item(r, name_of(r.app_id), now) for r in in_flight)
    order = list(Need)
    far = now + timedelta(days=36_500)
    items.sort(key=lambda i: (order.index(i.need), i.deadline or far,
                              -(i.since or now).timestamp(), i.app_id))
    return Attention(items, health, superseded)
