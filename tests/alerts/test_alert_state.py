"""Alert state in the database (SQLite and PostgreSQL): once per threshold, digest, replicas."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from rotator.adapters.db import SqlStore, make_engine
from rotator.alerts.runner import alert_pass
from rotator.domain.states import RotationState
from tests.alerts.helpers import policy, scanned
from tests.support.receivers import HttpReceiver
from tests.support.records import APP_A, APP_B, APP_C, T0, inv, make_rotation


def _hook(receiver: HttpReceiver, digest: str = "none", extra: str = "") -> str:
    return f"""
[alerts]
digest = "{digest}"
include_findings = false
[[alerts.channel]]
type = "webhook"
name = "hook"
url = "{receiver.url}/hook"
{extra}
"""


async def test_each_threshold_alerts_once_across_a_restart(
    store: SqlStore, db_url: str, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, _hook(http_receiver))
    scanned(store, [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=100)])
    first = await alert_pass(store, p, T0)
    assert first.ok and first.channels[0].new_alerts == 1
    assert [b["alerts"][0]["key"] for b in http_receiver.bodies()] == [
        f"expiry:{APP_A}:k1:30d"]
    # A restart: a new SqlStore (new engine, new process as far as the database knows).
    again = SqlStore(make_engine(db_url))
    try:
        second = await alert_pass(again, p, T0 + timedelta(hours=3))
        assert second.channels[0].new_alerts == 0 and second.channels[0].alerts_sent == 0
        assert len(http_receiver.requests) == 1
        # Six days later it crosses 14 days: one new alert, for the new threshold only.
        third = await alert_pass(again, p, T0 + timedelta(days=7))
        assert third.channels[0].new_alerts == 1
        keys = [b["alerts"][0]["key"] for b in http_receiver.bodies()]
        assert keys == [f"expiry:{APP_A}:k1:30d", f"expiry:{APP_A}:k1:14d"]
        # Expired: one more; nothing else ever repeats.
        await alert_pass(again, p, T0 + timedelta(days=21))
        await alert_pass(again, p, T0 + timedelta(days=22))
        keys = [b["alerts"][0]["key"] for b in http_receiver.bodies()]
        assert keys[2:] == [f"expiry:{APP_A}:k1:expired"]
    finally:
        again.close()
    sent = store.alerts.deliveries()
    assert {d.status for d in sent} == {"sent"} and len(sent) == 3


async def test_channel_thresholds_pick_their_own_alerts(
    store: SqlStore, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, _hook(http_receiver, extra="thresholds_days = [7, 1]") + f"""
[[alerts.channel]]
type = "slack"
name = "all"
url = "{http_receiver.url}/slack"
""")
    scanned(store, [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=5)])
    await alert_pass(store, p, T0)
    hook_keys = [b["alerts"][0]["key"] for b in http_receiver.bodies("/hook")]
    assert hook_keys == [f"expiry:{APP_B}:k2:7d"]
    slack_texts = [b["text"] for b in http_receiver.bodies("/slack")]
    assert len(slack_texts) == 2 and any("k1" in t for t in slack_texts)


async def test_daily_digest_is_one_message_per_day_and_urgent_alerts_do_not_wait(
    store: SqlStore, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, _hook(http_receiver, digest="daily"))
    scanned(store, [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=-3),
                    inv(APP_C, "k3", end_in_days=6)])
    store.create_rotation(make_rotation(APP_C, state=RotationState.FAILED,
                                        last_error="AADSTS7000215: invalid secret",
                                        finished_at=T0))
    report = await alert_pass(store, p, T0)
    # The expired credential and the failed rotation go at once, one message each; the
    # others wait for the day's digest, which goes out in the same pass.
    assert report.channels[0].messages_sent == 3 and report.channels[0].alerts_sent == 4
    expired, failed, digest = http_receiver.bodies()
    assert [a["key"] for a in expired["alerts"]] == [f"expiry:{APP_B}:k2:expired"]
    assert expired["digest"] is False
    assert failed["alerts"][0]["kind"] == "rotation" and "AADSTS7000215" in failed["text"]
    assert digest["digest"] is True and "2 alert(s), 1 critical" in digest["title"]
    assert {a["key"] for a in digest["alerts"]} == {f"expiry:{APP_A}:k1:30d",
                                                    f"expiry:{APP_C}:k3:7d"}
    # Later the same day a new credential crosses a threshold: it waits for tomorrow.
    scanned(store, [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=-3),
                    inv(APP_C, "k3", end_in_days=6), inv(APP_C, "k4", end_in_days=13)],
            now=T0 + timedelta(hours=2))
    later = await alert_pass(store, p, T0 + timedelta(hours=3))
    assert later.channels[0].new_alerts == 1 and later.channels[0].messages_sent == 0
    assert len(http_receiver.requests) == 3
    # ... but one that expires meanwhile does not.
    scanned(store, [inv(APP_A, "k1", end_in_days=20), inv(APP_B, "k2", end_in_days=-3),
                    inv(APP_C, "k3", end_in_days=6), inv(APP_C, "k4", end_in_days=13),
                    inv(APP_A, "k5", end_in_days=-0.1)], now=T0 + timedelta(hours=4))
    urgent = await alert_pass(store, p, T0 + timedelta(hours=5))
    assert urgent.channels[0].messages_sent == 1
    assert [a["key"] for a in http_receiver.bodies()[3]["alerts"]] == [
        f"expiry:{APP_A}:k5:expired"]
    tomorrow = await alert_pass(store, p, T0 + timedelta(days=1))
    assert tomorrow.channels[0].alerts_sent == 1
    assert [a["key"] for a in http_receiver.bodies()[4]["alerts"]] == [f"expiry:{APP_C}:k4:14d"]


async def test_two_replicas_send_each_alert_once(
    store: SqlStore, db_url: str, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, _hook(http_receiver))
    scanned(store, [inv(APP_A, f"k{i}", end_in_days=5 + i) for i in range(8)])
    other = SqlStore(make_engine(db_url))
    try:
        await asyncio.gather(
            alert_pass(store, p, T0, owner="replica-1"),
            alert_pass(other, p, T0, owner="replica-2"),
        )
    finally:
        other.close()
    keys = [b["alerts"][0]["key"] for b in http_receiver.bodies()]
    assert len(keys) == 8 and len(set(keys)) == 8


async def test_a_dead_channel_is_retried_with_backoff_and_does_not_stop_the_others(
    store: SqlStore, http_receiver: HttpReceiver, refused_url: str, blackhole_url: str,
    tmp_path: Path,
) -> None:
    p = policy(tmp_path, _hook(http_receiver) + f"""
[[alerts.channel]]
type = "teams"
name = "refused"
url = "{refused_url}"
[[alerts.channel]]
type = "webhook"
name = "silent"
url = "{blackhole_url}"
timeout_seconds = 0.5
""")
    scanned(store, [inv(APP_A, "k1", end_in_days=5), inv(APP_B, "k2", end_in_days=3)])
    report = await alert_pass(store, p, T0)
    by_name = {c.name: c for c in report.channels}
    assert not report.ok
    assert by_name["hook"].alerts_sent == 2 and not by_name["hook"].failed
    assert by_name["refused"].failed and "refused" in by_name["refused"].errors[0].lower()
    assert by_name["silent"].failed and "0.5 s" in by_name["silent"].errors[0]
    assert refused_url not in " ".join(by_name["refused"].errors)
    repo = store.alerts
    dead = repo.deliveries(channel="refused")
    # One attempt recorded, the second alert left for later instead of waiting on a dead host.
    assert sorted(d.attempts for d in dead) == [0, 1]
    tried = next(d for d in dead if d.attempts == 1)
    assert tried.status == "pending" and tried.next_attempt_at == T0 + timedelta(minutes=1)
    # Inside the backoff nothing is tried again; after it, it is.
    soon = await alert_pass(store, p, T0 + timedelta(seconds=30))
    assert {c.name: c.failed for c in soon.channels}["refused"] is True  # the untried one
    after = await alert_pass(store, p, T0 + timedelta(hours=1))
    assert max(d.attempts for d in repo.deliveries(channel="refused")) >= 2
    assert len(http_receiver.requests) == 2  # the good channel never repeats
    assert after.channels[0].alerts_sent == 0


async def test_an_alert_gives_up_after_max_send_attempts(
    store: SqlStore, refused_url: str, tmp_path: Path
) -> None:
    p = policy(tmp_path, f"""
[alerts]
digest = "none"
max_send_attempts = 2
include_findings = false
[[alerts.channel]]
type = "webhook"
url = "{refused_url}"
""")
    scanned(store, [inv(APP_A, "k1", end_in_days=5)])
    await alert_pass(store, p, T0)
    last = await alert_pass(store, p, T0 + timedelta(hours=2))
    assert last.channels[0].gave_up == 1
    (row,) = store.alerts.deliveries()
    assert row.status == "failed" and row.attempts == 2 and row.last_error
    quiet = await alert_pass(store, p, T0 + timedelta(days=1))
    assert quiet.ok and quiet.channels[0].alerts_sent == 0


async def test_a_partial_scan_is_alerted_and_noted(
    store: SqlStore, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    p = policy(tmp_path, _hook(http_receiver))
    scanned(store, [inv(APP_A, "k1", end_in_days=200)], status="partial")
    report = await alert_pass(store, p, T0)
    assert report.notes and "partial" in report.notes[0]
    (body,) = http_receiver.bodies()
    assert body["alerts"][0]["kind"] == "scan" and "incomplete" in body["alerts"][0]["subject"]
    assert "not an all-clear" in body["notes"][0]
