"""Owner routing through a real SMTP server: each owner hears about their own apps only,
once, across a restart; apps nobody owns go to the fallback channel."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rotator.adapters.db import SqlStore
from rotator.adapters.db.session import make_engine
from rotator.alerts.runner import alert_pass
from tests.alerts.helpers import policy, scanned
from tests.support.receivers import SMTP_PASSWORD, SMTP_USER, SmtpServer
from tests.support.records import APP_A, APP_B, APP_C, T0, inv

ALICE, BOB = "alice@example.com", "bob@example.com"
ENV = {"TEST_SMTP_PASSWORD": SMTP_PASSWORD}


def _toml(server: SmtpServer, digest: str) -> str:
    smtp = f"""host = "{server.host}"
port = {server.port}
starttls = true
ca_file = "{server.ca_file}"
username = "{SMTP_USER}"
password_env = "TEST_SMTP_PASSWORD"
from = "rotator@example.com"
"""
    return f"""
[alerts]
digest = "{digest}"
include_findings = false
[[alerts.channel]]
type = "owners"
name = "owners"
fallback = "central"
{smtp}
[[alerts.channel]]
type = "smtp"
name = "central"
thresholds_days = [1]
to = ["secops@example.com"]
{smtp}
"""


def _rows() -> list:  # type: ignore[type-arg]
    return [inv(APP_A, "k1", end_in_days=6, owners=(ALICE,)),
            inv(APP_B, "k2", end_in_days=3, owners=(BOB, ALICE)),
            inv(APP_C, "k3", end_in_days=10, owners=())]


def _recipients(server: SmtpServer) -> Counter[str]:
    return Counter(to for env in server.envelopes for to in env.rcpt_tos)


async def test_each_owner_gets_their_own_apps_once_and_the_rest_falls_back(
    store: SqlStore, db_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    p = policy(tmp_path, _toml(smtp_server, "none"))
    scanned(store, _rows())
    report = await alert_pass(store, p, T0, environ=ENV)
    assert report.ok, report.to_json()
    assert _recipients(smtp_server) == {ALICE: 2, BOB: 1, "secops@example.com": 1}
    by_to: dict[str, list[str]] = {}
    for env, mail in zip(smtp_server.envelopes, smtp_server.messages, strict=True):
        for to in env.rcpt_tos:
            by_to.setdefault(to, []).append(mail.get_payload(decode=True).decode())
    assert all(APP_C not in body for body in by_to[ALICE] + by_to[BOB])
    assert any(APP_A in body for body in by_to[ALICE])
    assert all(APP_A not in body for body in by_to[BOB])
    (central,) = by_to["secops@example.com"]
    assert APP_C in central and APP_A not in central  # only what nobody owns

    # A restart: a new store on the same database, the same pass again.
    again = SqlStore(make_engine(db_url))
    try:
        second = await alert_pass(again, p, T0, environ=ENV)
    finally:
        again.close()
    assert second.ok and sum(r.messages_sent for r in second.channels) == 0
    assert len(smtp_server.envelopes) == 4


async def test_digest_mode_sends_each_owner_one_message_a_day(
    store: SqlStore, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    p = policy(tmp_path, _toml(smtp_server, "daily"))
    scanned(store, _rows())
    report = await alert_pass(store, p, T0, environ=ENV)
    assert report.ok, report.to_json()
    assert _recipients(smtp_server) == {ALICE: 1, BOB: 1, "secops@example.com": 1}
    await alert_pass(store, p, T0, environ=ENV)
    assert len(smtp_server.envelopes) == 3
