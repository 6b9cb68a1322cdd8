"""The HTML report in a real headless browser: it renders the chart and the tables."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from rotator.adapters.db import SqlStore
from rotator.domain.credentials import CredentialKind
from rotator.domain.states import RotationState
from rotator.report.data import WEEKS
from rotator.report.render import render_csv, render_html
from rotator.report.source import load_report
from tests.alerts.helpers import policy, scanned
from tests.support.records import APP_A, APP_B, APP_C, T0, inv, make_rotation
from tests.support.tools import require_tool

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    return require_tool(*BROWSERS, package="chromium")


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=90, check=False,
    )


def sample_report(store: SqlStore, tmp_path: Path) -> str:
    rows = [inv(APP_A, f"m{i}", end_in_days=3 + 9 * i, managed=True) for i in range(12)]
    rows += [inv(APP_B, f"u{i}", end_in_days=1 + 13 * i) for i in range(10)]
    rows += [inv(APP_B, "old", end_in_days=-4), inv(APP_C, "forever", end_in_days=None),
             inv(APP_C, "cert", end_in_days=50, kind=CredentialKind.CERTIFICATE,
                 start_at=T0 - timedelta(days=700))]
    scanned(store, rows)
    store.create_rotation(make_rotation(APP_A, state=RotationState.FAILED, finished_at=T0,
                                        last_error="token lacks expected app role(s) Admin"))
    p = policy(tmp_path, "[alerts]\nprefer_certificates = true\n", managed=[APP_A])
    return render_html(load_report(store, p, T0 + timedelta(minutes=5)))


def test_html_report_renders_chart_and_tables_in_chromium(store: SqlStore, tmp_path: Path) -> None:
    browser = chromium()
    html = sample_report(store, tmp_path)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace(
        "http://adaptivecards.io", "")
    assert "https://" not in html and "<script" not in html and "<link" not in html
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    dom = _run(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    assert '<svg id="expiry-chart"' in out
    assert out.count('class="bar managed"') >= 5 and out.count('class="bar unmanaged"') >= 5
    for table in ("expiring", "findings", "rotations"):
        assert f'<table id="{table}">' in out
    assert "no_end_in_sight" in out and "lifetime_over_max" in out
    assert "missing_roles" in out and "secret_not_certificate" in out
    assert "Credential expiry report" in out
    shot = tmp_path / "report.png"
    result = _run(browser, tmp_path / "profile2", f"--screenshot={shot}",
                  "--window-size=1200,1600", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_chart_has_a_bar_slot_per_week_and_csv_is_safe(store: SqlStore, tmp_path: Path) -> None:
    html = sample_report(store, tmp_path)
    weeks = {part.split('"')[0] for part in html.split('data-week="')[1:]}
    assert 0 < len(weeks) <= WEEKS
    scanned(store, [inv(APP_A, "k1", end_in_days=5, app_display_name="=HYPERLINK(1)")])
    csv_text = render_csv(load_report(store, policy(tmp_path, ""), T0))
    assert "'=HYPERLINK(1)" in csv_text and csv_text.startswith("app_id,app_name,key_id")
