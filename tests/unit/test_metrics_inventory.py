"""The inventory's part of /metrics: bounded per-credential series, every credential counted."""

from __future__ import annotations

import gzip
import re
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rotator.config import DaemonPolicy, Policy, load_policy, load_settings
from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow
from rotator.metrics import Metrics, inventory_exposition

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def row(n: int, days: float | None, *, managed: bool = False,
        kind: CredentialKind = CredentialKind.SECRET) -> InventoryRow:
    return InventoryRow(
        app_id=f"00000000-0000-0000-0000-{n:012d}", key_id=f"10000000-0000-0000-0000-{n:012d}",
        object_id=f"20000000-0000-0000-0000-{n:012d}", app_display_name=f"app {n}", kind=kind,
        display_name=None, start_at=NOW - timedelta(days=1),
        end_at=None if days is None else NOW + timedelta(days=days), managed=managed,
    )


def samples(text: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_series_only_for_credentials_people_act_on() -> None:
    rows = [
        row(1, 400, managed=True),  # managed: always a series
        row(2, -3),  # unmanaged, expired
        row(3, 0.5),  # unmanaged, within a day
        row(4, 30),  # unmanaged, exactly at the horizon
        row(5, 31),  # unmanaged, beyond the horizon: counted only
        row(6, 200, kind=CredentialKind.CERTIFICATE),  # counted only
        row(7, None),  # never expires: counted only, no timestamp to give
        row(8, -30),  # unmanaged, expired exactly metrics_expired_days ago: still a series
        row(9, -31),  # unmanaged, expired longer ago: an old leftover, counted only
        row(10, -400, managed=True),  # managed: a series however long ago it expired
    ]
    page = inventory_exposition(rows, now=NOW, horizon_days=30, expired_days=30)
    assert (page.credentials, page.expiry_series) == (10, 6)
    expiry = samples(page.text, "rotator_credential_expiry_timestamp_seconds")
    assert sorted(int(dict(k)["app_id"][-2:]) for k in expiry) == [1, 2, 3, 4, 8, 10]
    managed = [dict(k)["managed"] for k in expiry]
    assert managed.count("true") == 2
    # Lean: the two ids someone needs to find the credential, and two short labels.
    assert {tuple(k for k, _ in key) for key in expiry} == {("app_id", "key_id", "kind", "managed")}

    counts = samples(page.text, "rotator_credentials")
    # Fixed, zeros included, whatever the tenant's size: 2 kinds x 8 buckets x (managed
    # on app registrations, unmanaged on app registrations or service principals).
    assert len(counts) == 48
    assert sum(counts.values()) == 10
    assert {dict(k)["source"] for k in counts if dict(k)["managed"] == "true"} == {"application"}

    def count(kind: str, managed: str, bucket: str, source: str = "application") -> float:
        key = (("days_left", bucket), ("kind", kind), ("managed", managed), ("source", source))
        return counts[key]

    assert count("secret", "true", "over_90") == 1
    assert count("secret", "false", "expired") == 3  # recent or not, all counted
    assert count("secret", "true", "expired") == 1
    assert count("secret", "false", "1") == 1
    assert count("secret", "false", "30") == 1
    assert count("secret", "false", "90") == 1
    assert count("certificate", "false", "over_90") == 1
    assert count("secret", "false", "never") == 1


def test_no_series_for_expired_unmanaged_credentials_when_expired_days_is_zero() -> None:
    rows = [row(1, -0.5), row(2, -0.5, managed=True), row(3, 0.5)]
    page = inventory_exposition(rows, now=NOW, horizon_days=30, expired_days=0)
    expiry = samples(page.text, "rotator_credential_expiry_timestamp_seconds")
    assert sorted(int(dict(k)["app_id"][-1]) for k in expiry) == [2, 3]


def test_series_count_does_not_grow_with_quiet_credentials() -> None:
    quiet = [row(n, 365) for n in range(5000)]
    page = inventory_exposition(quiet, now=NOW, horizon_days=30)
    assert page.expiry_series == 0
    assert len(page.text) < 10_000
    assert b"rotator_credential_expiry_timestamp_seconds{" not in page.text


def test_render_appends_the_last_scan_page_and_replaces_it() -> None:
    metrics = Metrics()
    assert b"rotator_credentials{" not in metrics.render()
    metrics.record_inventory([row(1, 5), row(2, 6)], now=NOW, horizon_days=30)
    assert len(re.findall(rb"^rotator_credential_expiry_timestamp_seconds\{", metrics.render(),
                          re.M)) == 2
    metrics.record_inventory([row(2, 6)], now=NOW, horizon_days=30)  # app 1's credential gone
    text = metrics.render()
    assert len(re.findall(rb"^rotator_credential_expiry_timestamp_seconds\{", text, re.M)) == 1
    assert b"rotator_rotations_started_total" in text
    # Still one valid exposition.
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {"rotator_credentials", "rotator_credential_expiry_timestamp_seconds"} <= names


def test_horizon_defaults_to_the_largest_alert_threshold(tmp_path: Path) -> None:
    def policy(text: str) -> Policy:
        path = tmp_path / "policy.toml"
        path.write_text('[defaults]\nvault_url = "https://v.vault.azure.net"\n' + text)
        return load_policy(path, load_settings({}))

    assert DaemonPolicy().metrics_horizon_days is None
    assert policy("").metrics_horizon_days == 30
    assert policy("[alerts]\nthresholds_days = [45, 10]\n").metrics_horizon_days == 45
    assert policy("metrics_horizon_days = 3\n").metrics_horizon_days == 3


def test_expired_days_is_a_daemon_key_with_a_default_of_30(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[defaults]\nvault_url = "https://v.vault.azure.net"\n')
    assert load_policy(path, load_settings({})).daemon.metrics_expired_days == 30
    path.write_text('[defaults]\nvault_url = "https://v.vault.azure.net"\n'
                    "metrics_expired_days = 0\n")
    assert load_policy(path, load_settings({})).daemon.metrics_expired_days == 0


def test_gzipped_page_is_one_stream_of_the_same_page() -> None:
    metrics = Metrics()
    assert gzip.decompress(metrics.render_gzip()) == metrics.render()
    metrics.record_inventory([row(n, n - 10) for n in range(50)], now=NOW, horizon_days=30)
    metrics.rotations_started.inc()
    first = metrics.render_gzip()
    metrics.rotations_started.inc()  # live counters change between scrapes
    second = metrics.render_gzip()
    for page in (first, second):
        decoder = zlib.decompressobj(31)  # one gzip member, as a strict client reads it
        assert decoder.decompress(page) + decoder.flush() == gzip.decompress(page)
        assert decoder.eof and not decoder.unused_data
    assert b"rotator_rotations_started_total 2.0" in gzip.decompress(second)
    assert gzip.decompress(second) == metrics.render()


def test_failure_counters_exist_at_zero_from_the_start() -> None:
    # An alert on increase() sees the first failure only if the series existed before it.
    text = Metrics().render()
    assert b'rotator_rotations_total{result="failed"} 0.0' in text
    assert b'rotator_scans_total{mode="full",status="partial"} 0.0' in text
    assert b'rotator_scans_total{mode="delta",status="failed"} 0.0' in text
    assert b"rotator_retirements_held_overdue 0.0" in text
    assert b"rotator_scan_interval_seconds 0.0" in text
