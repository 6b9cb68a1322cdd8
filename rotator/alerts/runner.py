"""One alert pass: read the database, decide what to tell, record it, send it.

The daemon schedules :func:`alert_pass`; ``rotator alerts run`` calls it once.
It never touches rotations: it only reads them, and every channel is sent to
concurrently with its own timeout, so a dead channel delays nothing but itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import structlog

from rotator.alerts.compose import (
    channel_test_message,
    digest_message,
    hook_alerts,
    rotation_alerts,
    scan_alerts,
    scan_notes,
    single_message,
)
from rotator.alerts.findings import (
    ROLE_PROBLEM,
    Finding,
    PostureRules,
    RoleProblem,
    credential_findings,
    policy_findings,
    role_findings,
)
from rotator.alerts.notifiers import Notifier, NotifierError, SmtpNotifier, build_notifiers
from rotator.alerts.owners import (
    apps_by_owner,
    for_owner,
    owner_channel_name,
    owners_by_app,
    unowned,
)
from rotator.alerts.thresholds import expiry_alerts
from rotator.config import DigestMode, Policy
from rotator.config.alerts import ChannelType
from rotator.domain.alerts import Alert, DeliveryStatus, Message
from rotator.domain.app_management import TenantPolicies
from rotator.domain.hooks import HookDelivery
from rotator.domain.records import InventoryRow, ScanRun
from rotator.domain.rotation import Rotation
from rotator.domain.states import ACTIVE_STATES, RotationState
from rotator.ports import AlertStore, Directory, DirectoryError, Store

log = structlog.get_logger("rotator.alerts")

_P = ParamSpec("_P")
_T = TypeVar("_T")


class OffLoop(Protocol):
    """Runs one blocking call in a worker thread (``asyncio.to_thread``'s shape)."""

    def __call__(self, call: Callable[_P, _T], /, *args: _P.args,
                 **kwargs: _P.kwargs) -> Awaitable[_T]: ...

# Individual messages per channel per pass; the rest wait for the next pass.
MAX_MESSAGES_PER_PASS: Final = 50
# How long a replica owns the rows it claimed (a send has its own, shorter, timeout).
CLAIM_LEASE: Final = timedelta(minutes=5)
RECENT_ROTATIONS: Final = 2000
RECENT_SCANS: Final = 50
PENDING_HOOK_DELIVERIES: Final = 2000


def send_backoff(attempts: int) -> timedelta:
    """1 min after the first failure, doubling, at most 1 h."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ----------------------------------------------------------------- what the pass sees


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the pure logic looks at, read once per pass."""

    now: datetime
    inventory: tuple[InventoryRow, ...]
    rotations: tuple[Rotation, ...]
    scans: tuple[ScanRun, ...]
    last_scan: ScanRun | None
    findings: tuple[Finding, ...]
    # Consumer hook deliveries not yet taken, of hooks still in the policy.
    hook_deliveries: tuple[HookDelivery, ...] = ()


def take_snapshot(store: Store, policy: Policy, now: datetime,
                  policies: TenantPolicies | None = None) -> Snapshot:
    """``policies``: the tenant's app management policies, when they could be read."""
    alerts = policy.alerts
    inventory = tuple(store.inventory())
    rotations = tuple(store.list_rotations(limit=RECENT_ROTATIONS))
    scans = tuple(store.alerts.recent_scans(
        now - timedelta(days=alerts.lookback_days), RECENT_SCANS
    ))
    rules = PostureRules(alerts.max_lifetime_days, alerts.prefer_certificates,
                         frozenset(alerts.expected_sp_credentials))
    names = {r.app_id: r.app_display_name for r in inventory}
    problems = [
        RoleProblem(app_id, at, text)
        for app_id, at, text in store.alerts.role_problems(
            now - timedelta(days=max(alerts.lookback_days, 30)), ROLE_PROBLEM
        )
    ]
    findings = credential_findings(inventory, rules, now) + role_findings(
        problems, rotations, policy.apps, names
    )
    if policies is not None:
        findings += policy_findings(inventory, policies)
    hook_names = {(app_id, h.name) for app_id, app in policy.apps.items() for h in app.hooks}
    pending = tuple(
        d for d in store.hooks.pending(PENDING_HOOK_DELIVERIES)
        if (d.app_id.lower(), d.hook) in hook_names  # a hook that left the policy is not retried
    ) if hook_names else ()
    return Snapshot(now, inventory, rotations, scans, store.last_scan(), tuple(findings),
                    pending)


def shared_alerts(snapshot: Snapshot, policy: Policy) -> list[Alert]:
    """Alerts every channel gets (its own thresholds only pick the expiry alerts)."""
    ap = policy.alerts
    lookback = timedelta(days=ap.lookback_days)
    out = scan_alerts(snapshot.scans, snapshot.now, lookback=lookback)
    relevant = [r for r in snapshot.rotations
                if r.state in ACTIVE_STATES or r.state is RotationState.FAILED
                # a recent retirement on the grace rule because the usage report failed
                or (r.rule_fallback and (r.finished_at or r.updated_at) >= snapshot.now - lookback)]
    out += rotation_alerts(relevant, snapshot.now, retrying_attempts=ap.retrying_attempts,
                           lookback=lookback)
    out += hook_alerts(snapshot.hook_deliveries, snapshot.now,
                       retrying_attempts=ap.retrying_attempts)
    if ap.include_findings:
        out += [f.to_alert() for f in snapshot.findings]
    return out


# ----------------------------------------------------------------- the report


@dataclass
class ChannelResult:
    name: str
    type: str
    new_alerts: int = 0
    messages_sent: int = 0
    alerts_sent: int = 0
    failed: bool = False
    errors: list[str] = field(default_factory=list)
    # Alerts that will not be retried any more (max_send_attempts reached).
    gave_up: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "new_alerts": self.new_alerts,
            "messages_sent": self.messages_sent, "alerts_sent": self.alerts_sent,
            "ok": not self.failed, "errors": self.errors, "gave_up": self.gave_up,
        }


@dataclass
class AlertPassReport:
    at: datetime
    alerts: int = 0
    findings: int = 0
    notes: tuple[str, ...] = ()
    channels: list[ChannelResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.channels)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.astimezone(UTC).isoformat(),
            "ok": self.ok,
            "alerts": self.alerts,
            "findings": self.findings,
            "notes": list(self.notes),
            "channels": [c.to_json() for c in self.channels],
        }


# ----------------------------------------------------------------- the pass


async def alert_pass(
    store: Store,
    policy: Policy,
    now: datetime,
    *,
    notifiers: Sequence[Notifier] | None = None,
    environ: Mapping[str, str] | None = None,
    owner: str | None = None,
    on_phase: Callable[[str], None] | None = None,
    directory: Directory | None = None,
    db: OffLoop = asyncio.to_thread,
) -> AlertPassReport:
    """Record what is new for every channel, then send what is due, channel by channel.

    Safe to run on any number of replicas at once: each alert is recorded once
    per channel (unique key) and sent by whichever replica claims it. ``on_phase``
    is told, in a few words, what the pass is doing now. With ``directory`` the
    tenant's app management policies are read too, and credentials that outlive what
    they allow are findings; a pass that cannot read them says so in its notes. ``db``
    runs the blocking store calls off the loop: the service passes its own database
    threads, so on SQLite the pass writes from the one thread the rotations write from.
    """

    def phase(what: str) -> None:
        if on_phase is not None:
            on_phase(what)

    ap = policy.alerts
    chans = list(notifiers) if notifiers is not None else build_notifiers(ap.channels, environ)
    policies, policy_note = None, None
    if directory is not None:
        phase("reading the tenant's app management policies")
        try:
            policies = await directory.list_credential_policies()
        except DirectoryError as exc:
            policy_note = (f"app management policies could not be read ({exc}); credentials "
                           "were not checked against them")
            log.warning("alert_pass_policies_unreadable", error=str(exc))
    phase("reading the inventory, rotations and scans")
    snapshot = await db(take_snapshot, store, policy, now, policies)
    notes = scan_notes(snapshot.last_scan)
    shared = shared_alerts(snapshot, policy)
    repo = store.alerts
    # The policy note is for whoever runs the pass, not for every message it sends.
    report = AlertPassReport(at=now, findings=len(snapshot.findings),
                             notes=notes + ((policy_note,) if policy_note else ()))
    owners_of = owners_by_app(snapshot.inventory)
    # Owner channel name -> the apps its owner hears about.
    routes: dict[str, frozenset[str]] = {}
    if notifiers is None:
        for ch in ap.channels:
            if ch.type is ChannelType.OWNERS:
                for address, apps in apps_by_owner(owners_of).items():
                    name = owner_channel_name(ch.name, address)
                    chans.append(SmtpNotifier(
                        replace(ch, type=ChannelType.SMTP, name=name, to=(address,)), environ))
                    routes[name] = apps
    seen: set[str] = set()
    for number, n in enumerate(chans, 1):
        phase(f"recording alerts for channel {n.name} ({number}/{len(chans)})")
        alerts = expiry_alerts(snapshot.inventory, n.thresholds_days or ap.thresholds_days, now)
        alerts += shared
        if n.name in routes:
            alerts = for_owner(alerts, routes[n.name])
        seen.update(a.key for a in alerts)
        result = ChannelResult(n.name, n.type)
        result.new_alerts = await db(repo.record, n.name, alerts, now)
        report.channels.append(result)
    results = {r.name: r for r in report.channels}
    for ch in ap.channels:
        if ch.type is ChannelType.OWNERS and ch.fallback is not None:
            # Apps nobody can be told of go to the fallback channel, recorded as its own.
            alerts = unowned(expiry_alerts(snapshot.inventory,
                                           ch.thresholds_days or ap.thresholds_days, now)
                             + shared, owners_of)
            added = await db(repo.record, ch.fallback, alerts, now)
            if ch.fallback in results:
                results[ch.fallback].new_alerts += added
    report.alerts = len(seen)
    who = owner or _owner()
    done = 0

    async def deliver(n: Notifier, r: ChannelResult) -> None:
        nonlocal done
        await _deliver(repo, db, n, r, policy, now, notes, who)
        done += 1
        phase(f"sending: {done}/{len(chans)} channel(s) done")

    if chans:
        phase(f"sending: 0/{len(chans)} channel(s) done")
    await asyncio.gather(*(deliver(n, r) for n, r in zip(chans, report.channels, strict=True)))
    for r in report.channels:
        (log.warning if r.failed else log.info)(
            "alert_channel", channel=r.name, new=r.new_alerts, sent=r.alerts_sent,
            errors=r.errors,
        )
    return report


async def _send(n: Notifier, message: Message) -> str | None:
    """``None`` on success, else why not (safe to store and show)."""
    try:
        await asyncio.wait_for(n.send(message), timeout=n.timeout_seconds + 1)
    except NotifierError as exc:
        return str(exc)
    except TimeoutError:
        return f"{n.type}: no answer within {n.timeout_seconds:g} s"
    except Exception as exc:  # noqa: BLE001 - a broken channel is reported, never raised
        return f"{n.type}: {type(exc).__name__}"
    return None


async def _deliver(
    repo: AlertStore,
    db: OffLoop,
    n: Notifier,
    result: ChannelResult,
    policy: Policy,
    now: datetime,
    notes: tuple[str, ...],
    owner: str,
) -> None:
    ap = policy.alerts
    try:
        if ap.digest is DigestMode.DAILY:
            # Expired, failed and held-too-long do not wait for tomorrow's digest.
            await _deliver_each(repo, db, n, result, ap.max_send_attempts, now, notes, owner,
                                urgent_only=True)
            await _deliver_digest(repo, db, n, result, ap.max_send_attempts, now, notes, owner)
        else:
            await _deliver_each(repo, db, n, result, ap.max_send_attempts, now, notes, owner)
    except Exception as exc:  # noqa: BLE001 - one channel's trouble must not stop the others
        result.failed = True
        result.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


async def _fail(repo: AlertStore, db: OffLoop, ids: list[int], token: str, now: datetime,
                error: str, max_attempts: int, result: ChannelResult) -> None:
    result.failed = True
    result.errors.append(error)
    await db(repo.mark_failed, ids, token, now, error,
             max_attempts=max_attempts, backoff=send_backoff)
    gave_up = [d for d in await db(repo.deliveries, channel=result.name, include_digests=True)
               if d.id in set(ids) and d.status is DeliveryStatus.FAILED]
    result.gave_up += len(gave_up)


async def _deliver_each(repo: AlertStore, db: OffLoop, n: Notifier, result: ChannelResult,
                        max_attempts: int, now: datetime, notes: tuple[str, ...],
                        owner: str, *, urgent_only: bool = False) -> None:
    token, rows = await db(
        functools.partial(repo.claim, n.name, owner, now, lease=CLAIM_LEASE,
                          limit=MAX_MESSAGES_PER_PASS, urgent_only=urgent_only)
    )
    for i, row in enumerate(rows):
        error = await _send(n, single_message(row.alert, now, notes))
        if error is None:
            await db(repo.mark_sent, [row.id], token, now)
            result.messages_sent += 1
            result.alerts_sent += 1
            continue
        await _fail(repo, db, [row.id], token, now, error, max_attempts, result)
        # The channel is down: leave the rest for the next pass instead of timing out on each.
        await db(repo.release, [r.id for r in rows[i + 1 :]], token)
        return


def digest_period(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


async def _deliver_digest(repo: AlertStore, db: OffLoop, n: Notifier, result: ChannelResult,
                          max_attempts: int, now: datetime, notes: tuple[str, ...],
                          owner: str) -> None:
    if not await db(repo.has_due, n.name, now):
        return
    key = await db(repo.ensure_digest, n.name, digest_period(now), now)
    # Only the replica that claims today's digest row sends it; once sent, no other
    # digest goes to this channel before tomorrow.
    token, digest_rows = await db(
        repo.claim, n.name, owner, now, lease=CLAIM_LEASE, limit=1, digest_key=key
    )
    if not digest_rows:
        return
    digest_id = digest_rows[0].id
    alert_token, rows = await db(
        repo.claim, n.name, owner, now, lease=CLAIM_LEASE, limit=100_000
    )
    if not rows:
        await db(repo.release, [digest_id], token)
        return
    message = digest_message([r.alert for r in rows], now, notes)
    error = await _send(n, message)
    if error is None:
        await db(repo.mark_sent, [r.id for r in rows], alert_token, now)
        await db(repo.mark_sent, [digest_id], token, now)
        result.messages_sent += 1
        result.alerts_sent += len(rows)
        return
    # The alerts wait (untouched) for the digest's retry; the digest row carries the backoff.
    await db(repo.release, [r.id for r in rows], alert_token)
    await _fail(repo, db, [digest_id], token, now, error, max_attempts, result)


# ----------------------------------------------------------------- test messages


@dataclass
class TestResult:
    name: str
    type: str
    ok: bool
    error: str | None = None


async def send_test_messages(
    policy: Policy,
    now: datetime,
    *,
    notifiers: Sequence[Notifier] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[TestResult]:
    """A test message to every channel, concurrently; nothing is recorded."""
    chans = (
        list(notifiers) if notifiers is not None
        else build_notifiers(policy.alerts.channels, environ)
    )
    errors = await asyncio.gather(*(_send(n, channel_test_message(n.name, now)) for n in chans))
    return [TestResult(n.name, n.type, e is None, e) for n, e in zip(chans, errors, strict=True)]
