"""Should this app rotate now, and which credential does a rotation supersede?

Pure checks over a snapshot of one app (cert-manager's shape): each check returns
a ``Verdict`` when it finds a reason to rotate, ``None`` otherwise, and the first
verdict wins. Nothing here talks to Graph or the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.domain.credentials import AppRegistration, Credential, CredentialKind


@dataclass(frozen=True, slots=True)
class RenewalRule:
    renew_before_days: float
    # Rotate once this fraction of the lifetime has passed (2/3, as cert-manager and
    # many tenant guides do), even when the absolute window has not been reached.
    lifetime_fraction: float = 2 / 3


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the checks may look at: the app's credentials of the managed kind."""

    app: AppRegistration
    kind: CredentialKind
    rule: RenewalRule

    @property
    def candidates(self) -> tuple[Credential, ...]:
        return self.app.of_kind(self.kind)

    def newest(self, now: datetime) -> Credential | None:
        """The valid credential that ends last; rotation is due only when even it is."""
        valid = [c for c in self.candidates if c.is_valid_at(now) and c.end is not None]
        return max(valid, key=lambda c: c.end or now, default=None)


Check = Callable[[Snapshot, datetime], Verdict | None]


def no_valid_credential(snap: Snapshot, now: datetime) -> Verdict | None:
    if any(c.is_valid_at(now) for c in snap.candidates):
        return None
    return Verdict("NoValidCredential", f"the app has no valid {snap.kind}")


def inside_renewal_window(snap: Snapshot, now: datetime) -> Verdict | None:
    newest = snap.newest(now)
    if newest is None or newest.end is None:
        return None
    left = newest.end - now
    if left <= timedelta(days=snap.rule.renew_before_days):
        days = left.total_seconds() / 86400
        return Verdict(
            "InsideRenewalWindow",
            f"{snap.kind} {newest.key_id} expires in {days:.1f} days "
            f"(renew at {snap.rule.renew_before_days:g})",
        )
    return None


def past_lifetime_fraction(snap: Snapshot, now: datetime) -> Verdict | None:
    newest = snap.newest(now)
    if newest is None or newest.end is None or newest.start is None:
        return None
    lifetime = newest.end - newest.start
    if lifetime <= timedelta(0):
        return None
    renew_at = newest.start + lifetime * snap.rule.lifetime_fraction
    if now >= renew_at:
        return Verdict(
            "PastLifetimeFraction",
            f"{snap.kind} {newest.key_id} is past {snap.rule.lifetime_fraction:.0%} "
            "of its lifetime",
        )
    return None


DEFAULT_CHECKS: tuple[Check, ...] = (
    no_valid_credential,
    inside_renewal_window,
    past_lifetime_fraction,
)


def first_violation(
    checks: Sequence[Check], snap: Snapshot, now: datetime
) -> Verdict | None:
    return next((v for c in checks if (v := c(snap, now))), None)


def rotation_due(snap: Snapshot, now: datetime) -> Verdict | None:
    return first_violation(DEFAULT_CHECKS, snap, now)


def default_kind(
    app: AppRegistration,
    now: datetime,
    *,
    configured: CredentialKind | None = None,
    requested: Credential | None = None,
) -> CredentialKind:
    """Which kind of credential a rotation of this app replaces.

    The policy's choice wins, then an admin's explicit credential; otherwise the kind
    of the valid credential that ends first (an expired leftover of another kind must
    not decide), then of any dated credential, and secrets when there is none.
    """
    if configured is not None:
        return configured
    if requested is not None:
        return requested.kind
    dated = [c for c in app.credentials if c.end is not None]
    valid = [c for c in dated if c.is_valid_at(now)]
    pool = valid or dated
    if pool:
        return min(pool, key=lambda c: c.end or now).kind
    return CredentialKind.SECRET


def superseded_credential(
    app: AppRegistration,
    kind: CredentialKind,
    now: datetime,
    *,
    requested_key_id: str | None = None,
    consumer_key_id: str | None = None,
) -> Credential | None:
    """The credential a new rotation replaces and may later retire.

    An admin's explicit choice wins; then the one the consumer secret holds today
    (consumers move from it to the new one); then, when the app is adopted and
    nothing is known, the newest valid credential of the kind: its expiry is what
    made the app due. Unknown key ids give ``None``: retire nothing rather than
    guess.
    """
    if requested_key_id is not None:
        return app.credential(requested_key_id)
    if consumer_key_id is not None and (held := app.credential(consumer_key_id)):
        return held
    return Snapshot(app, kind, RenewalRule(0)).newest(now)


@dataclass(frozen=True, slots=True)
class RetireDecision:
    allowed: bool
    reason: str


def may_retire(
    app: AppRegistration, old_key_id: str, new_key_id: str, now: datetime
) -> RetireDecision:
    """Invariant 1: never remove the last working credential, nor one not superseded."""
    if old_key_id == new_key_id:
        return RetireDecision(False, "the old and new credential are the same")
    if app.credential(old_key_id) is None:
        return RetireDecision(False, "the old credential is already gone")
    new = app.credential(new_key_id)
    if new is None:
        return RetireDecision(
            False,
            f"the new credential {new_key_id} is no longer on the app; "
            "refusing to remove the old one",
        )
    if not new.is_valid_at(now):
        return RetireDecision(False, f"the new credential {new_key_id} is not valid now")
    remaining = [c for c in app.credentials if c.key_id != old_key_id and c.is_valid_at(now)]
    if not remaining:
        return RetireDecision(False, "removing it would leave the app with no valid credential")
    return RetireDecision(True, "superseded by a verified, promoted credential")
