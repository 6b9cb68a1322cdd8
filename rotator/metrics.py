"""Prometheus metrics of the daemon (cert-manager style), on a registry of its own.

Labels are ids, kinds, states and status codes — never a secret value.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from rotator.domain.credentials import CredentialKind, CredentialSource

if TYPE_CHECKING:
    from rotator.domain.records import InventoryRow
    from rotator.domain.rotation import Rotation

__all__ = [
    "CONTENT_TYPE_LATEST", "DAYS_LEFT_BUCKETS", "DependencyHealth", "DependencyState",
    "InventoryExposition", "Metrics", "OperationState", "inventory_exposition",
]

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600,
                     2 * 86400, 7 * 86400)
_THROTTLE_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300)
_SCAN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


# Upper bounds (days left) of the buckets of ``rotator_credentials``; a credential
# falls in the first bucket whose bound it does not exceed.
DAYS_LEFT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("1", 1.0), ("7", 7.0), ("14", 14.0), ("30", 30.0), ("90", 90.0),
)
_DAYS_LEFT_LABELS = ("expired", *(b for b, _ in DAYS_LEFT_BUCKETS), "over_90", "never")
_KINDS = tuple(str(k) for k in CredentialKind)
_SOURCES = tuple(str(s) for s in CredentialSource)


def _days_left_bucket(end_at: datetime | None, now: datetime) -> str:
    if end_at is None:
        return "never"
    days = (end_at - now).total_seconds() / 86400
    if days <= 0:
        return "expired"
    for label, bound in DAYS_LEFT_BUCKETS:
        if days <= bound:
            return label
    return "over_90"


@dataclass(frozen=True, slots=True)
class InventoryExposition:
    """The inventory's part of /metrics, rendered once per scan, and gzipped once too:
    ``gzip_start`` is the start of a gzip stream of ``text`` and ``compressor`` the
    compressor as it stood after it, which a scrape copies to append its own part and
    end the stream (it is never used itself, so any number of copies can be taken)."""

    text: bytes
    credentials: int  # every credential the scan saw
    expiry_series: int  # how many of them have a series of their own
    gzip_start: bytes = field(default=b"", repr=False)
    compressor: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, text: bytes, credentials: int, expiry_series: int) -> InventoryExposition:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: with a gzip header
        return cls(text, credentials, expiry_series, compressor.compress(text), compressor)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def inventory_exposition(
    rows: Iterable[InventoryRow], *, now: datetime, horizon_days: float,
    expired_days: float = 30.0,
) -> InventoryExposition:
    """Render the inventory's gauges in the Prometheus text format.

    One ``rotator_credential_expiry_timestamp_seconds`` series per credential someone
    acts on: every managed one, and unmanaged ones expiring within ``horizon_days`` or
    expired at most ``expired_days`` ago (one expired long ago is an old leftover, and a
    tenant can hold many: it is counted, not listed). Every credential, those included,
    is counted in ``rotator_credentials`` by kind, managed, source (app registration or
    service principal) and days left, whose series count is fixed. Pure and thread-safe:
    the daemon runs it off the event loop when a scan ends.
    """
    horizon = now + timedelta(days=horizon_days)
    long_expired = now - timedelta(days=expired_days)
    expiry = GaugeMetricFamily(
        "rotator_credential_expiry_timestamp_seconds",
        "End of validity of each managed credential, and of each unmanaged one within the "
        "alert horizon or recently expired, as the last scan saw it (Unix time).",
        labels=["app_id", "key_id", "kind", "managed"],
    )
    counts: dict[tuple[str, str, str, str], int] = {
        (kind, managed, source, bucket): 0
        for kind in _KINDS for managed in ("true", "false") for source in _SOURCES
        for bucket in _DAYS_LEFT_LABELS
    }
    total = series = 0
    for row in rows:
        total += 1
        kind, managed = str(row.kind), "true" if row.managed else "false"
        key = (kind, managed, str(row.source), _days_left_bucket(row.end_at, now))
        counts[key] = counts.get(key, 0) + 1
        if row.end_at is None:
            continue
        if not row.managed and not long_expired <= row.end_at <= horizon:
            continue
        series += 1
        expiry.add_metric([row.app_id, row.key_id, kind, managed], row.end_at.timestamp())
    estate = GaugeMetricFamily(
        "rotator_credentials",
        "Credentials the last scan saw, by kind, managed, source (application or "
        "servicePrincipal) and days left until expiry (expired, at most 1, 7, 14, 30, 90, "
        "over_90, never).",
        labels=["kind", "managed", "source", "days_left"],
    )
    for (kind, managed, source, bucket), count in counts.items():
        if managed == "true" and source != str(CredentialSource.APPLICATION):
            continue  # only app registration credentials are ever managed
        estate.add_metric([kind, managed, source, bucket], count)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([expiry, estate]))
    return InventoryExposition.of(generate_latest(registry), total, series)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Rendered when a scan ends (see inventory_exposition); empty until then.
        self.inventory = InventoryExposition.of(b"", 0, 0)
        self.rotations = Counter(
            "rotator_rotations_total",
            "Rotations this process saw end, by result (completed, failed).",
            ["result"], registry=r,
        )
        self.rotations_started = Counter(
            "rotator_rotations_started_total",
            "Rotations this process planned because a credential was due.", registry=r,
        )
        self.rotation_duration = Histogram(
            "rotator_rotation_duration_seconds",
            "From plan to end (completed or failed), grace period included.",
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.verify_duration = Histogram(
            "rotator_verify_duration_seconds",
            "How long verification waited for the new credential to propagate.",
            buckets=_SCAN_BUCKETS, registry=r,
        )
        self.retirements_held = Gauge(
            "rotator_retirements_held",
            "Promoted rotations whose old credential is held: the usage report does not yet "
            "show the consumers moved to the new one (retire_when = \"unused\").",
            registry=r,
        )
        self.retirements_overdue = Gauge(
            "rotator_retirements_held_overdue",
            "Held retirements that have waited longer than retire_max_wait_hours.",
            registry=r,
        )
        self.rotations_in_flight = Gauge(
            "rotator_rotations_in_flight", "Rotations this process is driving now.", registry=r,
        )
        self.scan_duration = Histogram(
            "rotator_scan_duration_seconds", "Duration of a scan of all app registrations.",
            buckets=_SCAN_BUCKETS, registry=r,
        )
        self.scans = Counter(
            "rotator_scans_total",
            "Scans by status (succeeded, partial, failed) and mode (full: every app listed; "
            "delta: only what changed since the scan before).",
            ["status", "mode"], registry=r,
        )
        self.scan_interval = Gauge(
            "rotator_scan_interval_seconds",
            "How often the scan runs (scan_interval_minutes), for alerts on its freshness.",
            registry=r,
        )
        self.last_successful_scan = Gauge(
            "rotator_last_successful_scan_timestamp_seconds",
            "When the last scan that read every app finished (Unix time).", registry=r,
        )
        self.requests = Counter(
            "rotator_requests_total",
            "Requests to Graph, Key Vault and the token endpoint, by operation and status.",
            ["service", "operation", "status"], registry=r,
        )
        self.throttled = Counter(
            "rotator_throttled_requests_total",
            "Requests answered 429 Too Many Requests.", ["service"], registry=r,
        )
        self.jobs = Counter(
            "rotator_job_runs_total", "Scheduler job runs by job and outcome (ok, error).",
            ["job", "outcome"], registry=r,
        )
        self.graph_write_wait = Counter(
            "rotator_graph_write_wait_seconds_total",
            "Time Graph writes waited for the rate limiter.", registry=r,
        )
        self.throttle_wait = Histogram(
            "rotator_throttle_wait_seconds",
            "Waits a service asked for with Retry-After (graph, keyvault, token), by service.",
            ["service"], buckets=_THROTTLE_BUCKETS, registry=r,
        )
        self.dependencies = DependencyHealth()
        # Every result and status from the start, at 0: an alert on increase() then sees
        # the first failure, which a series born at 1 would hide.
        for result in ("completed", "failed"):
            self.rotations.labels(result)
        for status in ("succeeded", "partial", "failed"):
            for mode in ("full", "delta"):
                self.scans.labels(status, mode)

    # ------------------------------------------------------------------ recorders

    def record_request(self, service: str, operation: str, status: str) -> None:
        self.requests.labels(service, operation, status).inc()
        if status == "429":
            self.throttled.labels(service).inc()
        self.dependencies.record(service, operation, status)

    def record_throttle_wait(self, service: str, seconds: float) -> None:
        self.throttle_wait.labels(service).observe(seconds)

    def record_inventory(
        self, rows: Iterable[InventoryRow], *, now: datetime, horizon_days: float,
        expired_days: float = 30.0,
    ) -> InventoryExposition:
        """Replace the inventory's gauges with what the latest scan saw (gone credentials
        vanish). Safe to call from a worker thread: the page is swapped in one assignment."""
        self.inventory = inventory_exposition(
            rows, now=now, horizon_days=horizon_days, expired_days=expired_days
        )
        return self.inventory

    def record_finished(self, rotation: Rotation) -> None:
        self.rotations.labels(str(rotation.state)).inc()
        if rotation.finished_at is not None:
            self.rotation_duration.observe(
                max(0.0, (rotation.finished_at - rotation.created_at).total_seconds())
            )

    def record_verified(self, seconds: float) -> None:
        self.verify_duration.observe(seconds)

    def render(self) -> bytes:
        """The page a scrape gets: the inventory page rendered when the last scan ended,
        then the live counters (a few hundred series, whatever the tenant's size)."""
        inventory = self.inventory
        return inventory.text + generate_latest(self.registry)

    def render_gzip(self) -> bytes:
        """:meth:`render`, gzipped: only the live counters are compressed per scrape."""
        inventory = self.inventory
        compressor = inventory.compressor.copy()
        tail: bytes = compressor.compress(generate_latest(self.registry)) + compressor.flush()
        return inventory.gzip_start + tail


# Request statuses that say the service itself is in trouble. Anything else is an answer
# about the request (404, 403, an AADSTS refusal of a candidate credential), so the
# service was there to give it.
_TROUBLE = re.compile(r"^(?:5\d\d|408|429|unreachable|refused)$")


@dataclass(frozen=True, slots=True)
class OperationState:
    """The latest outcome of one operation on one service, and how long it has failed."""

    last_seen: float  # Unix time
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_status: str = "ok"

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


@dataclass(frozen=True, slots=True)
class DependencyState:
    """What this process last heard from one outside service, operation by operation.

    ``failing``: its latest request failed; ``degraded``: it answers, but some operation's
    latest request failed (e.g. only removePassword); ``ok`` otherwise.
    """

    service: str
    operations: Mapping[str, OperationState]
    last_operation: str

    @property
    def status(self) -> str:
        if self.operations[self.last_operation].failing:
            return "failing"
        return "degraded" if any(o.failing for o in self.operations.values()) else "ok"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": self.status,
            "last_seen": _iso(max(o.last_seen for o in self.operations.values())),
        }
        failing = {
            name: {
                "since": _iso(op.failing_since or op.last_seen),
                "consecutive_failures": op.consecutive_failures,
                "last_status": op.last_status,
            }
            for name, op in sorted(self.operations.items()) if op.failing
        }
        if failing:
            out["failing_operations"] = failing
        return out


class DependencyHealth:
    """Graph, Key Vault and the token endpoint as this process's own requests found them.

    Fed by the same calls that count ``rotator_requests_total``; read by /readyz, which
    reports it without letting it decide readiness (a rotation step's outage is the
    rotation's to wait out, and every replica would see the same one). Lives in the
    daemon's event loop, like every caller of :meth:`record`.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._operations: dict[str, dict[str, OperationState]] = {}
        self._last: dict[str, str] = {}

    def record(self, service: str, operation: str, status: str) -> None:
        now = self._clock()
        ops = self._operations.setdefault(service, {})
        before = ops.get(operation)
        if _TROUBLE.match(status) is None:
            ops[operation] = OperationState(now)
        else:
            failures = before.consecutive_failures if before is not None else 0
            since = before.failing_since if before is not None and before.failing else now
            ops[operation] = OperationState(now, failures + 1, since, status)
        self._last[service] = operation

    def states(self) -> dict[str, DependencyState]:
        return {
            service: DependencyState(service, MappingProxyType(dict(ops)), self._last[service])
            for service, ops in sorted(self._operations.items())
        }


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")
