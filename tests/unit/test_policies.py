from datetime import UTC, datetime, timedelta

from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.policies import (
    RenewalRule,
    Snapshot,
    may_retire,
    rotation_due,
    superseded_credential,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
S = CredentialKind.SECRET


def secret(key: str, *, days_left: float, lifetime_days: float = 180) -> Credential:
    end = NOW + timedelta(days=days_left)
    return Credential(key, S, None, end - timedelta(days=lifetime_days), end)


def app(*creds: Credential) -> AppRegistration:
    return AppRegistration("obj", "app", "demo", tuple(creds))


def due(a: AppRegistration, renew: float = 30) -> str | None:
    verdict = rotation_due(Snapshot(a, S, RenewalRule(renew)), NOW)
    return verdict.reason if verdict else None


def test_not_due_when_far_from_expiry() -> None:
    assert due(app(secret("a", days_left=100, lifetime_days=120))) is None


def test_due_inside_window() -> None:
    assert due(app(secret("a", days_left=10))) == "InsideRenewalWindow"


def test_due_when_only_expired_credentials() -> None:
    assert due(app(secret("a", days_left=-1))) == "NoValidCredential"
    assert due(app()) == "NoValidCredential"


def test_not_due_when_a_newer_credential_exists() -> None:
    # The old one is expiring but the previous rotation already made a fresh one.
    assert due(app(secret("old", days_left=5), secret("new", days_left=170))) is None


def test_due_past_two_thirds_of_lifetime() -> None:
    a = app(secret("a", days_left=40, lifetime_days=180))  # 140/180 days used
    assert due(a) == "PastLifetimeFraction"


def test_superseded_prefers_request_then_consumer_then_newest() -> None:
    a = app(secret("x", days_left=5), secret("y", days_left=20))
    assert superseded_credential(a, S, NOW, requested_key_id="x").key_id == "x"  # type: ignore[union-attr]
    assert superseded_credential(a, S, NOW, consumer_key_id="x").key_id == "x"  # type: ignore[union-attr]
    assert superseded_credential(a, S, NOW).key_id == "y"  # type: ignore[union-attr]
    assert superseded_credential(a, S, NOW, requested_key_id="nope") is None


def test_may_retire_guards_the_last_credential() -> None:
    a = app(secret("old", days_left=5), secret("new", days_left=170))
    assert may_retire(a, "old", "new", NOW).allowed
    assert not may_retire(a, "old", "old", NOW).allowed
    assert not may_retire(app(secret("old", days_left=5)), "old", "new", NOW).allowed
    expired_new = app(secret("old", days_left=5), secret("new", days_left=-1))
    assert not may_retire(expired_new, "old", "new", NOW).allowed
    assert not may_retire(a, "gone", "new", NOW).allowed


def test_default_kind_follows_policy_request_then_first_valid_expiry() -> None:
    from rotator.domain.policies import default_kind

    cert = Credential("c", CredentialKind.CERTIFICATE, None, NOW - timedelta(days=100),
                      NOW + timedelta(days=20))
    old_secret = secret("s-old", days_left=-30)  # an expired leftover
    a = app(old_secret, cert)
    assert default_kind(a, NOW) is CredentialKind.CERTIFICATE
    assert default_kind(a, NOW, configured=S) is S
    assert default_kind(a, NOW, requested=old_secret) is S
    assert default_kind(app(old_secret), NOW) is S  # nothing valid: the dated ones decide
    assert default_kind(app(), NOW) is S
