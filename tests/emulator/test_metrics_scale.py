"""/metrics at 20,000 apps: the expiry series stay bounded, the aggregate counts everything.

The emulated tenant of 20,000 apps (about 48,000 credentials, many expired long ago),
read in-process into the rows a scan records and rendered once, as the service does
when a scan ends: scanning it over HTTPS would cost a minute and test nothing more
(tests/service covers the page the running service serves).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from rotator.metrics import inventory_exposition
from tests.support.inventory import seeded_inventory

APPS = 20_000
MANAGED = 500
HORIZON_DAYS = 30.0  # the default policy's largest alert threshold
EXPIRED_DAYS = 30.0  # metrics_expired_days' default


def test_expiry_series_are_bounded_and_the_aggregate_adds_up() -> None:
    rows = seeded_inventory(APPS, MANAGED)
    now = datetime.now(UTC)
    page = inventory_exposition(rows, now=now, horizon_days=HORIZON_DAYS,
                                expired_days=EXPIRED_DAYS)
    assert len(rows) > 2 * APPS  # 1-3 secrets and 0-2 certificates per app

    series: set[tuple[str, str]] = set()
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(page.text.decode()):
        for s in family.samples:
            if s.name == "rotator_credential_expiry_timestamp_seconds":
                series.add((s.labels["app_id"], s.labels["key_id"]))
            elif s.name == "rotator_credentials":
                counts[(s.labels["kind"], s.labels["managed"], s.labels["source"])] += int(
                    s.value)

    # Every credential is counted in the aggregate, by kind, managed and source.
    assert +counts == Counter(
        (str(r.kind), "true" if r.managed else "false", str(r.source)) for r in rows)
    assert sum(counts.values()) == page.credentials == len(rows)

    # A series for every managed credential and every unmanaged one expiring within the
    # horizon or expired at most EXPIRED_DAYS ago; none for the others.
    low, high = now - timedelta(days=EXPIRED_DAYS), now + timedelta(days=HORIZON_DAYS)
    expected = {
        (r.app_id, r.key_id) for r in rows
        if r.end_at is not None and (r.managed or low <= r.end_at <= high)
    }
    assert series == expected
    assert page.expiry_series == len(series)
    managed = sum(1 for r in rows if r.managed and r.end_at is not None)
    assert managed > MANAGED
    # The tenant does hold what the bound leaves out: long-expired and quiet credentials.
    assert any(not r.managed and r.end_at is not None and r.end_at < low for r in rows)
    assert len(series) < len(rows) / 5, (len(series), len(rows))
