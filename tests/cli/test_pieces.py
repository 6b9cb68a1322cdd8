"""The admin commands' pure pieces: what needs attention, --since, colour, the status line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.cli.app import colour_on, parse_since
from rotator.cli.attention import Need, age_text, needs_attention, scan_health
from rotator.cli.progress import StatusLine
from rotator.config import Policy, load_policy, load_settings
from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow, ScanRun, ScanStatus
from rotator.domain.states import RotationState
from tests.support.records import make_rotation

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
A, B, C, D = (f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-000000000000" for n in "abcd")


def scan(status: ScanStatus = ScanStatus.SUCCEEDED, *, ago: timedelta = timedelta(minutes=5),
         error: str | None = None, error_count: int = 0) -> ScanRun:
    return ScanRun(id="s1", started_at=NOW - ago - timedelta(seconds=3),
                   finished_at=None if status is ScanStatus.RUNNING else NOW - ago,
                   status=status, apps_seen=4, credentials_seen=5, error_count=error_count,
                   error=error)


def row(app_id: str, days_left: float, name: str) -> InventoryRow:
    return InventoryRow(app_id=app_id, key_id=f"k-{app_id[:4]}", object_id="o", kind=
                        CredentialKind.SECRET, app_display_name=name, display_name=None,
                        start_at=NOW - timedelta(days=30),
                        end_at=NOW + timedelta(days=days_left))


def policy(tmp_path: Path, *apps: str) -> Policy:
    lines = ["[defaults]", "renew_before_days = 14", "scan_interval_minutes = 60"]
    for a in apps:
        lines += ["[[app]]", f'app_id = "{a}"', 'vault_url = "https://v.vault.azure.net"']
    path = tmp_path / "p.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_policy(path, load_settings({}))


def test_most_urgent_first(tmp_path: Path) -> None:
    pol = policy(tmp_path, A, B, C, D)
    names = {A: "alpha", B: "bravo", C: "charlie", D: "delta"}
    old_failure = make_rotation(A, state=RotationState.FAILED, now=NOW - timedelta(days=3),
                                last_error="old trouble")
    fixed = make_rotation(A, state=RotationState.COMPLETED, now=NOW - timedelta(days=2))
    failed = make_rotation(B, state=RotationState.FAILED, now=NOW - timedelta(hours=1),
                           last_error="create: Authorization_RequestDenied: not an owner")
    retrying = make_rotation(C, state=RotationState.STAGED, now=NOW - timedelta(minutes=3),
                             last_error="verify: token endpoint 503",
                             next_attempt_at=NOW + timedelta(seconds=40))
    att = needs_attention(
        policy=pol, in_flight=[retrying], recent=[failed, fixed, old_failure],
        inventory=[row(A, 100, "alpha"), row(B, 5, "bravo"), row(C, 5, "charlie"),
                   row(D, 2, "delta")],
        names=names, last_scan=scan(), last_good_scan=scan(), now=NOW,
    )
    assert [(i.need, i.app_id) for i in att.items] == [
        (Need.FAILED, B), (Need.DUE, D), (Need.IN_FLIGHT, C)]
    assert att.superseded_failures == 1  # A's failure was followed by a rotation that worked
    failed_item, due_item, flying = att.items
    assert failed_item.display_name == "bravo" and "not an owner" in failed_item.detail
    assert failed_item.what_to_do.startswith("grant rotator the access it lacks")
    assert f"rotator rotate --app {B}" in failed_item.what_to_do
    assert due_item.detail == "secret k-dddd expires in 2.0 days (renew at 14)"
    assert due_item.state == "not planned" and due_item.deadline == NOW + timedelta(days=2)
    assert flying.next_attempt_at == NOW + timedelta(seconds=40) and flying.actionable
    assert flying.detail == "retrying after: verify: token endpoint 503"
    assert att.scan.healthy and att.scan.summary == "succeeded 5m ago (4 apps, 5 credentials)"


def test_due_apps_sorted_by_expiry_and_unseen_managed_apps(tmp_path: Path) -> None:
    pol = policy(tmp_path, A, B, C)
    att = needs_attention(policy=pol, in_flight=[], recent=[],
                          inventory=[row(A, 9, "alpha"), row(B, -1, "bravo")], names={},
                          last_scan=scan(), last_good_scan=scan(), now=NOW)
    assert [(i.need, i.app_id) for i in att.items] == [
        (Need.DUE, B), (Need.DUE, A), (Need.UNSEEN, C)]
    assert att.items[0].detail == "the app has no valid secret"


def test_no_scan_means_nothing_is_known_to_be_due(tmp_path: Path) -> None:
    att = needs_attention(policy=policy(tmp_path, A), in_flight=[], recent=[],
                          inventory=[], names={}, last_scan=None, last_good_scan=None, now=NOW)
    assert att.items == [] and not att.scan.healthy
    assert att.scan.summary == "no scan has run yet: run `rotator scan`"


@pytest.mark.parametrize(("last", "healthy", "words"), [
    (scan(ScanStatus.FAILED, error="Graph 503"), False, "failed 5m ago: Graph 503; the "
     "inventory is from the scan 2d00h ago"),
    (scan(ScanStatus.PARTIAL, error_count=2), False, "2 app(s) could not be read"),
    (scan(ago=timedelta(hours=3)), False, "stale, older than two scan intervals (2h00m)"),
    (scan(ScanStatus.RUNNING, ago=timedelta(minutes=1)), True, "running for 1m"),
    (scan(ScanStatus.RUNNING, ago=timedelta(hours=5)), False, "it may have died"),
])
def test_scan_health(last: ScanRun, healthy: bool, words: str) -> None:
    good = scan(ago=timedelta(days=2))
    health = scan_health(last, good, interval=timedelta(hours=1), now=NOW)
    assert health.healthy is healthy and words in health.summary, health.summary


def test_age_text() -> None:
    assert [age_text(timedelta(seconds=s)) for s in (-5, 59, 61, 3 * 3600 + 300, 2 * 86400)] \
        == ["0s", "59s", "1m", "3h05m", "2d00h"]


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2w", NOW - timedelta(weeks=2)),
    (" 1.5d ", NOW - timedelta(hours=36)),
    ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
    ("2026-11-20T08:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ("2026-11-20T08:00Z", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ("2026-11-20T08:00+02:00", datetime(2026, 11, 20, 6, tzinfo=UTC)),
])
def test_since_accepts(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7y", "-1d", "1e3d", "yesterday",
                                  "2026-11-29", "2026-02-30", "1900-01-01", "99999999d"])
def test_since_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_since(text, NOW)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_on(Tty()) and not colour_on(io.StringIO())
    for value in ("1", ""):
        monkeypatch.setenv("NO_COLOR", value)
        assert not colour_on(Tty())


def test_status_line_redraws_a_few_times_a_second_at_most() -> None:
    tty = Tty()
    line = StatusLine(tty, interval=0.25)
    counter = [0]
    line.show(lambda: f"n={counter[0]}")
    clock = line.clock
    start = clock()
    while clock() - start < 1.0:  # a callback far faster than anyone can read
        counter[0] += 1
        line.touch()
    line.close("done")
    text = tty.getvalue()
    draws = [f for f in text.split("\r") if f.startswith("n=")]
    assert 3 <= len(draws) <= 7, draws
    assert text.endswith("\rdone\n")  # erased, and the final word left in its place


def test_status_line_is_silent_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    line = StatusLine.for_stderr()
    assert not line.enabled
    line.show(lambda: "busy")
    line.touch()
    line.close("done")
    assert piped.getvalue() == ""
    monkeypatch.setattr("sys.stderr", Tty())
    assert StatusLine.for_stderr().enabled and not StatusLine.for_stderr(as_json=True).enabled


def test_a_service_principal_credential_of_a_managed_app_is_never_due(tmp_path: Path) -> None:
    from dataclasses import replace

    from rotator.domain.credentials import CredentialSource

    on_sp = replace(row(A, 2, "alpha"), source=CredentialSource.SERVICE_PRINCIPAL,
                    sp_object_id="sp", key_id="k-sp")
    att = needs_attention(policy=policy(tmp_path, A), in_flight=[], recent=[],
                          inventory=[on_sp, row(A, 200, "alpha")], names={},
                          last_scan=scan(), last_good_scan=scan(), now=NOW)
    assert att.items == []  # the app's own credential is far from due
    att = needs_attention(policy=policy(tmp_path, A), in_flight=[], recent=[],
                          inventory=[on_sp, row(A, 5, "alpha")], names={},
                          last_scan=scan(), last_good_scan=scan(), now=NOW)
    (due,) = att.items
    assert due.deadline == NOW + timedelta(days=5)  # not the service principal's end


def test_an_incremental_scan_says_how_much_changed_not_how_much_it_read() -> None:
    from dataclasses import replace

    delta = replace(scan(), mode="delta", apps_changed=3, graph_requests=5)
    health = scan_health(delta, delta, interval=timedelta(hours=1), now=NOW)
    assert health.healthy and health.summary == "succeeded 5m ago (incremental: 3 changed)"
