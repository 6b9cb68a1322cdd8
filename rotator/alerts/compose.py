"""Alerts about rotations and scans, digest grouping and the plain-text form. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from rotator.domain.alerts import SEVERITY_ORDER, Alert, AlertKind, Message, Severity
from rotator.domain.hooks import HOOK_WAIT, EventType, HookDelivery
from rotator.domain.records import ScanRun, ScanStatus
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState

MAX_ERROR_IN_MESSAGE = 300
# A digest lists at most this many alerts; the rest are counted.
MAX_DIGEST_ITEMS = 200


def _short(text: str | None) -> str:
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:MAX_ERROR_IN_MESSAGE]


def rotation_alerts(
    rotations: Iterable[Rotation], now: datetime, *, retrying_attempts: int, lookback: timedelta
) -> list[Alert]:
    """A failed rotation (recent), or an active one that keeps retrying: once per rotation.
    Also a retirement held past retire_max_wait_hours, and (once per app) a usage report
    that could not be read, so the grace rule retired instead."""
    out: list[Alert] = []
    for r in rotations:
        if r.active and r.held_overdue:
            out.append(Alert(
                key=f"retirement-held:{r.id}",
                kind=AlertKind.ROTATION,
                severity=Severity.WARNING,
                subject=(
                    f"Retirement of {r.old_key_id} (app {r.app_id}, rotation {r.id}) is still "
                    f"held after retire_max_wait_hours: {_short(r.held)}; move the consumers "
                    "that still use it, or retire it with rotator rotate --retire-now"
                ),
                app_id=r.app_id,
                details={"rotation_id": r.id, "state": str(r.state), "held": _short(r.held)},
            ))
        if r.rule_fallback and r.state in (RotationState.PROMOTED, RotationState.RETIRING,
                                           RotationState.COMPLETED):
            # Keyed by app: said once per app, not once per rotation.
            out.append(Alert(
                key=f"usage-report-unavailable:{r.app_id}",
                kind=AlertKind.ROTATION,
                severity=Severity.WARNING,
                subject=(
                    f"App {r.app_id} is set to retire_when = \"unused\" but the credential "
                    f"usage report cannot be read ({_short(r.rule_fallback)}); its old "
                    "credentials are retired on the grace rule. Grant AuditLog.Read.All."
                ),
                app_id=r.app_id,
                details={"rotation_id": r.id, "error": _short(r.rule_fallback)},
            ))
        if r.state is RotationState.FAILED:
            if (r.finished_at or r.updated_at) < now - lookback:
                continue
            out.append(Alert(
                key=f"rotation-failed:{r.id}",
                kind=AlertKind.ROTATION,
                severity=Severity.CRITICAL,
                subject=(
                    f"Rotation {r.id} of app {r.app_id} failed and was rolled back; the old "
                    f"credential is untouched: {_short(r.last_error) or 'no error recorded'}"
                ),
                app_id=r.app_id,
                details={"rotation_id": r.id, "state": str(r.state), "attempts": r.attempts,
                         "error": _short(r.last_error)},
            ))
        elif r.active and (r.attempts >= retrying_attempts or r.last_error) and not (
            r.state is RotationState.PROMOTED and (r.last_error or "").startswith(HOOK_WAIT)
        ):
            # A promoted rotation whose consumer hook is being retried is waiting, not
            # failing: the hook itself is alerted once it keeps failing (hook_alerts).
            nxt = (
                f"; next attempt {r.next_attempt_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                if r.next_attempt_at else ""
            )
            out.append(Alert(
                key=f"rotation-retrying:{r.id}",
                kind=AlertKind.ROTATION,
                severity=Severity.WARNING,
                subject=(
                    f"Rotation {r.id} of app {r.app_id} is stuck in {r.state} after "
                    f"{r.attempts} attempt(s): {_short(r.last_error) or 'no error recorded'}{nxt}"
                ),
                app_id=r.app_id,
                details={"rotation_id": r.id, "state": str(r.state), "attempts": r.attempts,
                         "error": _short(r.last_error)},
            ))
    return out


def hook_alerts(
    deliveries: Iterable[HookDelivery], now: datetime, *, retrying_attempts: int
) -> list[Alert]:
    """A consumer hook that keeps failing: once per hook and event, and only after it has
    failed ``retrying_attempts`` times over at least ``HOOK_FAILING_AFTER`` (a receiver
    that restarts in between is what the retries are for)."""
    out: list[Alert] = []
    for d in deliveries:
        if not d.failing(now, retrying_attempts):
            continue
        since = (d.created_at or d.event.time).astimezone(UTC)
        stake = (
            "the old credential is not retired until it does"
            if d.event.type is EventType.PROMOTED
            else "it is retried until it does"
        )
        rotation_id = d.event.data.get("rotation_id") or d.rotation_id
        out.append(Alert(
            key=f"hook-failing:{d.rotation_id}:{d.hook}:{d.event.type.short}",
            kind=AlertKind.ROTATION,
            severity=Severity.WARNING,
            subject=(
                f"Consumer hook {d.hook} of app {d.app_id} has not taken the "
                f"{d.event.type.short} event of rotation {rotation_id} after {d.attempts} "
                f"attempt(s) since {since:%Y-%m-%d %H:%M} UTC ({_short(d.last_error)}); "
                f"{stake}"
            ),
            app_id=d.app_id,
            details={"rotation_id": d.rotation_id, "hook": d.hook,
                     "event_type": d.event.type.value, "event_id": d.event.id,
                     "attempts": d.attempts, "error": _short(d.last_error)},
        ))
    return out


def scan_alerts(scans: Iterable[ScanRun], now: datetime, *, lookback: timedelta) -> list[Alert]:
    out: list[Alert] = []
    for scan in scans:
        if scan.status not in (ScanStatus.FAILED, ScanStatus.PARTIAL):
            continue
        if (scan.finished_at or scan.started_at) < now - lookback:
            continue
        failed = scan.status is ScanStatus.FAILED
        what = (
            f"failed: {_short(scan.error) or 'no error recorded'}"
            if failed
            else f"was partial: {scan.error_count} app(s) could not be read"
        )
        out.append(Alert(
            key=f"scan:{scan.id}",
            kind=AlertKind.SCAN,
            severity=Severity.CRITICAL if failed else Severity.WARNING,
            subject=(
                f"The scan started {scan.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC {what}; "
                "the credential inventory is incomplete, so expiry alerts may be missing"
            ),
            details={"scan_id": scan.id, "status": str(scan.status),
                     "error_count": scan.error_count},
        ))
    return out


def scan_notes(last: ScanRun | None) -> tuple[str, ...]:
    """What every message says first when the inventory cannot be trusted to be complete."""
    if last is None:
        return ("No scan has run yet: there is no credential inventory to alert on.",)
    if last.status is ScanStatus.RUNNING:
        return ()
    if not last.clean:
        return (
            f"The last scan was {last.status}: the inventory is incomplete and this is not "
            "an all-clear.",
        )
    return ()


_KIND_ORDER = {AlertKind.SCAN: 0, AlertKind.ROTATION: 1, AlertKind.EXPIRY: 2,
               AlertKind.FINDING: 3}
SECTION_TITLES = {
    AlertKind.SCAN: "Scans",
    AlertKind.ROTATION: "Rotations",
    AlertKind.EXPIRY: "Expiring credentials",
    AlertKind.FINDING: "Posture findings",
}


def digest_sections(alerts: Sequence[Alert]) -> list[tuple[str, list[Alert]]]:
    """Alerts grouped by kind (scans, rotations, expiry, findings), most severe first in each."""
    groups: dict[AlertKind, list[Alert]] = {}
    for alert in alerts:
        groups.setdefault(alert.kind, []).append(alert)
    out: list[tuple[str, list[Alert]]] = []
    for kind in sorted(groups, key=lambda k: _KIND_ORDER[k]):
        items = sorted(groups[kind], key=lambda a: (SEVERITY_ORDER[a.severity],
                                                   _days(a), a.key))
        out.append((SECTION_TITLES[kind], items))
    return out


def _days(alert: Alert) -> float:
    value = alert.details.get("days_left")
    return float(value) if isinstance(value, int | float) else 0.0


def digest_message(alerts: Sequence[Alert], now: datetime, notes: tuple[str, ...] = ()) -> Message:
    ordered = [a for _, items in digest_sections(alerts) for a in items]
    shown = tuple(ordered[:MAX_DIGEST_ITEMS])
    critical = sum(1 for a in alerts if a.severity is Severity.CRITICAL)
    title = (
        f"rotator digest {now.astimezone(UTC):%Y-%m-%d}: {len(alerts)} alert(s)"
        + (f", {critical} critical" if critical else "")
    )
    return Message(title=title, alerts=shown, generated_at=now, digest=True, notes=notes,
                   omitted=len(ordered) - len(shown))


def single_message(alert: Alert, now: datetime, notes: tuple[str, ...] = ()) -> Message:
    title = f"rotator {alert.severity}: {alert.kind}"
    return Message(title=title, alerts=(alert,), generated_at=now, notes=notes)


def channel_test_message(channel: str, now: datetime) -> Message:
    return Message(
        title="rotator test message",
        alerts=(Alert(
            key="test", kind=AlertKind.SCAN, severity=Severity.INFO,
            subject=f"This is a test of the alert channel {channel!r}. Nothing needs doing.",
        ),),
        generated_at=now,
        test=True,
    )


def message_text(message: Message) -> str:
    """The plain-text form (e-mail body, log line, webhook ``text``)."""
    lines = [message.title, ""]
    lines.extend(message.notes)
    if message.notes:
        lines.append("")
    if message.digest:
        for title, items in digest_sections(message.alerts):
            lines.append(f"{title} ({len(items)}):")
            lines.extend(f"  [{a.severity}] {a.subject}" for a in items)
            lines.append("")
        if message.omitted:
            lines.append(f"... and {message.omitted} more (see `rotator report`).")
    else:
        lines.extend(f"[{a.severity}] {a.subject}" for a in message.alerts)
    lines.append("")
    lines.append(f"Sent by rotator at {message.generated_at.astimezone(UTC).isoformat()}")
    return "\n".join(lines).strip() + "\n"
