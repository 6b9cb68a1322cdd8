"""The pure core: thresholds, findings, digest grouping, payload formats, [alerts] parsing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.alerts.compose import (
    digest_message,
    digest_sections,
    message_text,
    rotation_alerts,
    scan_alerts,
    scan_notes,
    single_message,
)
from rotator.alerts.findings import (
    FindingKind,
    PostureRules,
    RoleProblem,
    credential_findings,
    policy_findings,
    role_findings,
)
from rotator.alerts.formats import slack_payload, teams_payload, webhook_payload
from rotator.alerts.thresholds import crossed_threshold, expiry_alerts
from rotator.config import ChannelType, ConfigError, DigestMode
from rotator.domain.alerts import AlertKind, Severity
from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.credentials import CredentialKind
from rotator.domain.records import ScanRun, ScanStatus
from rotator.domain.states import RotationState
from tests.alerts.helpers import policy
from tests.support.records import APP_A, APP_B, APP_C, T0, inv, make_rotation

TH = (30.0, 14.0, 7.0, 1.0)


@pytest.mark.parametrize(
    ("days", "expected"),
    [(None, None), (45, None), (30.5, None), (30, "30d"), (20, "30d"), (14, "14d"),
     (8, "14d"), (6.9, "7d"), (1, "1d"), (0.2, "1d"), (0, "expired"), (-400, "expired")],
)
def test_crossed_threshold_is_the_tightest_one(days: float | None, expected: str | None) -> None:
    assert crossed_threshold(days, TH) == expected


def test_crossed_threshold_honours_a_channels_own_list() -> None:
    assert crossed_threshold(10, (7.0, 1.0)) is None
    assert crossed_threshold(5, (7.0, 1.0)) == "7d"


def test_expiry_alerts_keys_severity_and_words() -> None:
    rows = [inv(APP_A, "k1", end_in_days=5, managed=True), inv(APP_B, "k2", end_in_days=-2),
            inv(APP_C, "k3", end_in_days=None), inv(APP_C, "k4", end_in_days=90)]
    alerts = expiry_alerts(rows, TH, T0)
    assert [a.key for a in alerts] == [f"expiry:{APP_B}:k2:expired", f"expiry:{APP_A}:k1:7d"]
    expired, soon = alerts
    assert expired.severity is Severity.CRITICAL and "expired on" in expired.subject
    assert "not managed by rotator" in expired.subject
    assert "expires in 5.0 days" in soon.subject and "rotator manages" in soon.subject
    assert soon.details["threshold"] == "7d" and soon.details["managed"] is True


def test_findings_cover_each_rule() -> None:
    year = timedelta(days=365)
    rows = [
        inv(APP_A, "long", end_in_days=500, start_at=T0 - year),  # 865-day lifetime
        inv(APP_A, "noend", end_in_days=None),
        inv(APP_B, "s1", end_in_days=20), inv(APP_B, "s2", end_in_days=40),
        inv(APP_B, "s3", end_in_days=60),
        inv(APP_C, "c1", end_in_days=20, kind=CredentialKind.CERTIFICATE,
            start_at=T0 - timedelta(days=10)),
        inv(APP_C, "s9", end_in_days=20, start_at=T0 - timedelta(days=1)),
        inv(APP_C, "forever", end_in_days=365 * 20, start_at=T0 - timedelta(days=400)),
    ]
    found = credential_findings(rows, PostureRules(365, prefer_certificates=True), T0)
    kinds = {(f.kind, f.app_id, f.key_id) for f in found}
    assert (FindingKind.LIFETIME_OVER_MAX, APP_A, "long") in kinds
    assert (FindingKind.NO_END_IN_SIGHT, APP_A, "noend") in kinds
    assert (FindingKind.NO_END_IN_SIGHT, APP_C, "forever") in kinds
    assert (FindingKind.TOO_MANY_SECRETS, APP_B, None) in kinds
    assert (FindingKind.SECRET_NOT_CERTIFICATE, APP_C, "s9") in kinds
    without_pref = credential_findings(rows, PostureRules(365), T0)
    assert not any(f.kind is FindingKind.SECRET_NOT_CERTIFICATE for f in without_pref)
    assert len({f.key for f in found}) == len(found)


def test_policy_findings_use_the_policy_in_force_for_each_app() -> None:
    days = timedelta(days=1)
    default = CredentialRestrictions("default-id", "tenant default",
                                     password_max_lifetime=90 * days,
                                     key_max_lifetime=365 * days)
    own = CredentialRestrictions("own-id", "application", password_max_lifetime=365 * days)
    b_object = inv(APP_B).object_id
    policies = TenantPolicies(default, {b_object: own})
    rows = [  # every inv() row started 150 days ago
        inv(APP_A, "long-secret", end_in_days=50),  # 200 days > 90
        inv(APP_A, "short-secret", end_in_days=-60),  # exactly 90 days: allowed
        inv(APP_A, "cert", end_in_days=50, kind=CredentialKind.CERTIFICATE),  # 200 < 365
        inv(APP_A, "no-start", end_in_days=900, start_at=None),
        inv(APP_B, "own-allows", end_in_days=50),  # 200 days < the app's own 365
        inv(APP_B, "own-cert", end_in_days=900, kind=CredentialKind.CERTIFICATE),  # no key limit
        inv(APP_B, "own-too-long", end_in_days=250),  # 400 days > 365
    ]
    found = policy_findings(rows, policies)
    assert [(f.app_id, f.key_id) for f in found] == [(APP_A, "long-secret"),
                                                     (APP_B, "own-too-long")]
    first, second = found
    assert first.kind is FindingKind.LIFETIME_OVER_APP_POLICY
    assert first.severity is Severity.WARNING
    assert "200 days" in first.message and "90 days" in first.message
    assert "'default-id' (tenant default)" in first.message
    assert "'own-id' (application)" in second.message and "365 days" in second.message
    assert policy_findings(rows, TenantPolicies()) == []
    assert len({f.key for f in found}) == len(found)


def test_role_finding_only_for_managed_apps_and_cleared_by_a_later_success() -> None:
    msg = "token lacks expected app role(s) Admin: grant them and give admin consent"
    problems = [RoleProblem(APP_A, T0, msg), RoleProblem(APP_B, T0, msg),
                RoleProblem(APP_C, T0, msg)]
    later_ok = make_rotation(APP_B, state=RotationState.COMPLETED,
                             now=T0 + timedelta(hours=1))
    found = role_findings(problems, [later_ok], {APP_A: 1, APP_B: 1}, {APP_A: "orders"})
    assert [(f.kind, f.app_id) for f in found] == [(FindingKind.MISSING_ROLES, APP_A)]
    assert "orders" in found[0].message and "Admin" in found[0].message


def test_rotation_and_scan_alerts() -> None:
    failed = make_rotation(APP_A, state=RotationState.FAILED, last_error="AADSTS7000215: nope",
                           finished_at=T0)
    old = make_rotation(APP_B, state=RotationState.FAILED, now=T0 - timedelta(days=30),
                        finished_at=T0 - timedelta(days=30))
    stuck = make_rotation(APP_C, state=RotationState.STAGED, attempts=4, last_error="429")
    fine = make_rotation(APP_C, state=RotationState.STAGED, attempts=1)
    alerts = rotation_alerts([failed, old, stuck, fine], T0, retrying_attempts=3,
                             lookback=timedelta(days=7))
    assert [a.key for a in alerts] == [f"rotation-failed:{failed.id}",
                                       f"rotation-retrying:{stuck.id}"]
    assert "AADSTS7000215" in alerts[0].subject and alerts[0].severity is Severity.CRITICAL
    scans = [ScanRun("s1", T0, T0, ScanStatus.PARTIAL, 3, 3, 1, None),
             ScanRun("s2", T0, T0, ScanStatus.SUCCEEDED, 3, 3, 0, None),
             ScanRun("s3", T0, T0, ScanStatus.FAILED, 0, 0, 1, "Graph said no")]
    got = scan_alerts(scans, T0, lookback=timedelta(days=7))
    assert [a.key for a in got] == ["scan:s1", "scan:s3"]
    assert "incomplete" in got[0].subject and "Graph said no" in got[1].subject
    assert scan_notes(scans[0]) and not scan_notes(scans[1]) and scan_notes(None)


def test_digest_groups_by_kind_most_severe_first() -> None:
    rows = [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=-1)]
    alerts = expiry_alerts(rows, TH, T0)
    failed = make_rotation(APP_A, state=RotationState.FAILED, finished_at=T0)
    alerts += rotation_alerts([failed], T0, retrying_attempts=3, lookback=timedelta(days=1))
    sections = digest_sections(alerts)
    assert [t for t, _ in sections] == ["Rotations", "Expiring credentials"]
    assert [a.details.get("threshold") for a in sections[1][1]] == ["expired", "30d"]
    message = digest_message(alerts, T0, ("The last scan was partial",))
    assert message.digest and "3 alert(s), 2 critical" in message.title
    text = message_text(message)
    assert text.index("Rotations (1)") < text.index("Expiring credentials (2)")
    assert text.startswith(message.title) and "The last scan was partial" in text


def test_payload_shapes() -> None:
    alert = expiry_alerts([inv(APP_A, "k1", end_in_days=3)], TH, T0)[0]
    message = single_message(alert, T0)
    slack = slack_payload(message)
    assert set(slack) == {"text", "blocks"} and alert.subject in slack["text"]
    assert slack["blocks"][0]["type"] == "header"
    teams = teams_payload(message)
    assert teams["type"] == "message"
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert any(b.get("text") == alert.subject for b in card["content"]["body"])
    hook = webhook_payload(message)
    assert hook["schema"] == "rotator.alerts/v1" and hook["alerts"][0]["key"] == alert.key
    json.dumps([slack, teams, hook])  # all serialisable


def test_slack_digest_respects_block_limits() -> None:
    rows = [inv(APP_A, f"k{i}", end_in_days=5) for i in range(400)]
    slack = slack_payload(digest_message(expiry_alerts(rows, TH, T0), T0))
    assert len(slack["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"] if b["type"] == "section")


# ----------------------------------------------------------------- [alerts] in the policy file


def test_alerts_policy_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = policy(tmp_path, """
[alerts]
thresholds_days = [7, 30, 14, 1]
digest = "none"
max_lifetime_days = 180
prefer_certificates = true
[[alerts.channel]]
type = "webhook"
url = "https://hooks.example.com/x"
thresholds_days = [7, 1]
[[alerts.channel]]
type = "slack"
url_env = "SLACK_URL"
[[alerts.channel]]
type = "smtp"
host = "smtp.example.com"
username = "rotator"
password_env = "ROTATOR_SMTP_PASSWORD"
from = "rotator@example.com"
to = ["secops@example.com"]
[[alerts.channel]]
type = "log"
name = "audit-log"
""")
    a = p.alerts
    assert a.thresholds_days == (30, 14, 7, 1) and a.digest is DigestMode.NONE
    assert a.max_lifetime_days == 180 and a.prefer_certificates
    assert [(c.type, c.name) for c in a.channels] == [
        (ChannelType.WEBHOOK, "webhook-1"), (ChannelType.SLACK, "slack-1"),
        (ChannelType.SMTP, "smtp-1"), (ChannelType.LOG, "audit-log")]
    assert a.channels[0].thresholds_days == (7, 1)
    smtp = a.channels[2]
    assert smtp.port == 587 and smtp.starttls and smtp.to == ("secops@example.com",)


def test_no_alerts_table_means_defaults(tmp_path: Path) -> None:
    a = policy(tmp_path, "").alerts
    assert a.thresholds_days == (30, 14, 7, 1) and a.digest is DigestMode.DAILY
    assert a.channels == ()


@pytest.mark.parametrize(
    ("toml", "line", "words"),
    [
        ('[alerts]\nthreshold_days = [7]\n', 4, "did you mean 'thresholds_days'"),
        ('[alerts]\ndigest = "hourly"\n', 4, "must be one of none, daily"),
        ('[alerts]\nthresholds_days = [7, 7]\n', 4, "twice"),
        ('[[alerts.channel]]\ntype = "pager"\n', 4, "must be one of webhook"),
        ('[[alerts.channel]]\ntype = "webhook"\n', 3, "exactly one of url or url_env"),
        ('[[alerts.channel]]\ntype = "webhook"\nurl = "http://hooks.example.com/x"\n', 5,
         "https://"),
        ('[[alerts.channel]]\ntype = "smtp"\nhost = "h"\nfrom = "a@b.c"\nto = ["x@y.z"]\n'
         'password = "hunter2"\n', 8, "password_env"),
        ('[[alerts.channel]]\ntype = "log"\nurl = "https://x.example"\n', 5,
         "not a log channel key"),
        ('[[alerts.channel]]\ntype = "smtp"\nhost = "h"\n', 3, "from, to missing"),
        ('[alert]\ndigest = "daily"\n', 3, "did you mean 'alerts'"),
    ],
)
def test_bad_alerts_config_names_file_line_and_key(
    tmp_path: Path, toml: str, line: int, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        policy(tmp_path, toml)
    text = str(err.value)
    assert f"policy.toml:{line}:" in text, text
    assert words in text, text
    assert "hunter2" not in text
    assert "http://hooks.example.com" not in text


def test_duplicate_channel_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already the name of the channel"):
        policy(tmp_path, '[[alerts.channel]]\ntype = "log"\nname = "a"\n'
                         '[[alerts.channel]]\ntype = "log"\nname = "a"\n')


def test_alert_kinds_are_the_models() -> None:
    from rotator.adapters.db.models import ALERT_KINDS, ALERT_SEVERITIES

    assert {k.value for k in AlertKind} | {"digest"} == set(ALERT_KINDS)
    assert {s.value for s in Severity} == set(ALERT_SEVERITIES)


def test_a_hook_is_alerted_only_once_it_keeps_failing() -> None:
    from rotator.alerts.compose import hook_alerts
    from rotator.domain.hooks import (
        HOOK_FAILING_AFTER,
        HOOK_WAIT,
        DeliveryStatus,
        EventType,
        HookDelivery,
        make_event,
    )

    event = make_event(EventType.PROMOTED, rotation_id="r1", app_id=APP_A, at=T0)
    failing = HookDelivery("r1", APP_A, "restart", event, DeliveryStatus.PENDING, attempts=3,
                           last_error="exit status 1", created_at=T0)
    later = T0 + HOOK_FAILING_AFTER
    assert hook_alerts([failing], later - timedelta(seconds=1), retrying_attempts=3) == []
    assert hook_alerts([replace(failing, attempts=2)], later, retrying_attempts=3) == []
    [alert] = hook_alerts([failing], later, retrying_attempts=3)
    assert alert.key == "hook-failing:r1:restart:promoted" and "exit status 1" in alert.subject
    done = replace(failing, status=DeliveryStatus.DELIVERED)
    assert hook_alerts([done], later, retrying_attempts=3) == []
    # The promoted rotation that waits for that hook is not itself "retrying".
    waiting = make_rotation(APP_A, state=RotationState.PROMOTED,
                            last_error=f"{HOOK_WAIT}: restart not yet notified")
    assert rotation_alerts([waiting], later, retrying_attempts=3,
                           lookback=timedelta(days=7)) == []


def test_expired_failed_and_held_too_long_are_urgent_the_rest_waits() -> None:
    from rotator.domain.alerts import is_urgent

    assert is_urgent("expiry:app:key:expired")
    assert is_urgent("rotation-failed:r1") and is_urgent("retirement-held:r1")
    assert not is_urgent("expiry:app:key:7d") and not is_urgent("rotation-retrying:r1")
    assert not is_urgent("finding:no-owner:app:-") and not is_urgent("scan:12")
