"""Real channels on loopback: SMTP with STARTTLS and login, Slack/Teams/JSON webhooks, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from rotator.adapters.db import SqlStore
from rotator.alerts.runner import alert_pass, send_test_messages
from rotator.cli.main import cli
from tests.alerts.helpers import policy, scanned
from tests.support.receivers import SMTP_PASSWORD, SMTP_USER, HttpReceiver, SmtpServer
from tests.support.records import APP_A, APP_B, T0, inv


def _smtp_toml(server: SmtpServer, digest: str = "none") -> str:
    return f"""
[alerts]
digest = "{digest}"
include_findings = false
[[alerts.channel]]
type = "smtp"
name = "mail"
host = "{server.host}"
port = {server.port}
starttls = true
ca_file = "{server.ca_file}"
username = "{SMTP_USER}"
password_env = "TEST_SMTP_PASSWORD"
from = "rotator@example.com"
to = ["secops@example.com", "oncall@example.com"]
"""


async def test_smtp_starttls_login_and_content(
    store: SqlStore, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    p = policy(tmp_path, _smtp_toml(smtp_server, digest="daily"))
    # Neither has expired: an expired one would go at once, outside the digest.
    scanned(store, [inv(APP_A, "k1", end_in_days=6, managed=True),
                    inv(APP_B, "k2", end_in_days=2)])
    report = await alert_pass(store, p, T0, environ={"TEST_SMTP_PASSWORD": SMTP_PASSWORD})
    assert report.ok, report.to_json()
    assert smtp_server.logins == [SMTP_USER]
    (mail,) = smtp_server.messages
    (envelope,) = smtp_server.envelopes
    assert envelope.rcpt_tos == ["secops@example.com", "oncall@example.com"]
    assert mail["From"] == "rotator@example.com"
    assert mail["Subject"] == "rotator digest 2026-11-26: 2 alert(s), 2 critical"
    body = mail.get_payload(decode=True).decode()
    assert "Expiring credentials (2):" in body
    assert f"of 'app {APP_B[:8]}' (app {APP_B}) expires in 2.0 days" in body
    assert "expires in 6.0 days" in body and "rotator manages this app" in body
    assert SMTP_PASSWORD not in body


async def test_smtp_without_the_password_in_the_environment_fails_clearly(
    store: SqlStore, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    p = policy(tmp_path, _smtp_toml(smtp_server))
    (result,) = await send_test_messages(p, T0, environ={})
    assert not result.ok and result.error is not None
    assert "TEST_SMTP_PASSWORD" in result.error and "not set" in result.error
    (wrong,) = await send_test_messages(p, T0, environ={"TEST_SMTP_PASSWORD": "nope"})
    assert not wrong.ok and wrong.error is not None and "login refused" in wrong.error
    assert smtp_server.messages == []


async def test_slack_and_teams_payloads_reach_the_receiver(
    store: SqlStore, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, f"""
[alerts]
digest = "none"
include_findings = false
[[alerts.channel]]
type = "slack"
url_env = "SLACK_WEBHOOK"
[[alerts.channel]]
type = "teams"
url = "{http_receiver.url}/teams"
""")
    scanned(store, [inv(APP_A, "k1", end_in_days=2)])
    env = {"SLACK_WEBHOOK": f"{http_receiver.url}/services/T000/B000/s3cr3tt0ken"}
    report = await alert_pass(store, p, T0, environ=env)
    assert report.ok
    (slack,) = http_receiver.bodies("/services/T000/B000/s3cr3tt0ken")
    assert set(slack) == {"text", "blocks"} and "expires in 2.0 days" in slack["text"]
    assert slack["blocks"][0]["type"] == "header"
    (teams,) = http_receiver.bodies("/teams")
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard"
    assert any("expires in 2.0 days" in b.get("text", "") for b in card["body"])
    assert all(r.headers["Content-Type"] == "application/json" for r in http_receiver.requests)
    # The Slack URL is a credential: it never shows up in a report or a message.
    assert "s3cr3tt0ken" not in json.dumps(report.to_json())
    assert all(b"s3cr3tt0ken" not in r.raw for r in http_receiver.requests)


def _cli_env(tmp_path: Path, toml: str) -> dict[str, str]:
    p = tmp_path / "cli-policy.toml"
    p.write_text(toml)
    return {"ROTATOR_CONFIG": str(p), "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
            "ROTATOR_VAULT_URL": "https://vault.example.test"}


def test_cli_alerts_test_says_what_happened_and_exits_1_on_a_failure(
    http_receiver: HttpReceiver, refused_url: str, tmp_path: Path
) -> None:
    env = _cli_env(tmp_path, f"""
[[alerts.channel]]
type = "webhook"
name = "good"
url = "{http_receiver.url}/hook"
[[alerts.channel]]
type = "slack"
name = "dead"
url = "{refused_url}"
[[alerts.channel]]
type = "log"
""")
    result = CliRunner().invoke(cli, ["alerts", "test"], env=env)
    assert result.exit_code == 1, result.output
    assert "good" in result.output and "sent" in result.output
    assert "dead" in result.output and "FAILED" in result.output
    assert "connection refused" in result.output
    (body,) = http_receiver.bodies()
    assert body["test"] is True
    result = CliRunner().invoke(cli, ["alerts", "test", "--json"], env=env)
    assert [r["ok"] for r in json.loads(result.stdout)] == [True, False, True]


def test_cli_alerts_run_json(http_receiver: HttpReceiver, tmp_path: Path) -> None:
    env = _cli_env(tmp_path, f"""
[alerts]
digest = "none"
[[alerts.channel]]
type = "webhook"
url = "{http_receiver.url}/hook"
""")
    result = CliRunner().invoke(cli, ["alerts", "run", "--json"], env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["channels"][0]["name"] == "webhook-1"
    # An empty database: no scan yet, said out loud.
    assert "No scan has run yet" in out["notes"][0]


@pytest.mark.parametrize("days", [timedelta(days=0)])
def test_cli_alerts_test_without_channels_is_a_usage_error(tmp_path: Path,
                                                          days: timedelta) -> None:
    result = CliRunner().invoke(cli, ["alerts", "test"], env=_cli_env(tmp_path, ""))
    assert result.exit_code == 2 and "no alert channels" in result.output
