"""The service's pure parts: readiness and dependency health, the rate limiter for Graph
writes, and the wrappers that count every request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from rotator.adapters.counting import CountingDirectory, CountingTokenProbe
from rotator.adapters.rate_limited import AsyncRateLimiter, RateLimitedDirectory
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import Credential, CredentialKind
from rotator.domain.records import ScanStatus
from rotator.domain.secret_value import SecretValue
from rotator.health import ScanOutcome, judge_readiness
from rotator.metrics import DependencyHealth, Metrics
from rotator.ports import DirectoryError, TokenOutcome

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_readiness_rules() -> None:
    ok = ScanOutcome(ScanStatus.SUCCEEDED, NOW - timedelta(minutes=5))
    assert judge_readiness(database_ok=True, database_error=None, last_scan=ok,
                           scan_interval=HOUR, now=NOW).ready
    assert not judge_readiness(database_ok=False, database_error="x", last_scan=ok,
                               scan_interval=HOUR, now=NOW).ready
    assert not judge_readiness(database_ok=True, database_error=None, last_scan=None,
                               scan_interval=HOUR, now=NOW).ready
    failed = ScanOutcome(ScanStatus.FAILED, NOW, "Graph down")
    verdict = judge_readiness(database_ok=True, database_error=None, last_scan=failed,
                              scan_interval=HOUR, now=NOW)
    assert not verdict.ready and "failed" in verdict.reason
    stale = ScanOutcome(ScanStatus.SUCCEEDED, NOW - 3 * HOUR)
    assert not judge_readiness(database_ok=True, database_error=None, last_scan=stale,
                               scan_interval=HOUR, now=NOW).ready


class _Dir:
    """The Directory's methods that the wrappers must pass on, counting the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self.calls.append("remove_password")
        if key_id == "throttled":
            raise DirectoryError("slow down", status=429)

    async def add_key(self, object_id: str, der: bytes, name: str, proof: str) -> Credential:
        self.calls.append("add_key")
        return Credential("k2", CredentialKind.CERTIFICATE, display_name=name, start=None, end=None)

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        self.calls.append("remove_key")

    async def list_key_credentials(self, object_id: str) -> list[KeyEntry]:
        self.calls.append("list_key_credentials")
        return []

    async def set_key_credentials(self, object_id: str, entries: object) -> None:
        self.calls.append("set_key_credentials")


async def test_rate_limiter_paces_every_write_and_no_read() -> None:
    ticks = [0.0]
    limiter = AsyncRateLimiter(60, burst=2, clock=lambda: ticks[0])
    inner = _Dir()
    limited = RateLimitedDirectory(inner, limiter)  # type: ignore[arg-type]
    await limited.remove_password("o", "k")
    await limited.add_key("o", b"der", "n", "proof")
    assert limiter._tokens < 1
    # Reads never wait for a token.
    assert await asyncio.wait_for(limited.list_key_credentials("o"), 1) == []
    ticks[0] = 1.0  # one second refills one token at 60 per minute
    await asyncio.wait_for(limited.remove_key("o", "k", "proof"), 1)
    assert limiter._tokens < 1
    ticks[0] = 2.0
    await asyncio.wait_for(limited.set_key_credentials("o", []), 1)
    assert limiter._tokens < 1
    assert inner.calls == ["remove_password", "add_key", "list_key_credentials",
                           "remove_key", "set_key_credentials"]


async def test_time_writes_wait_for_the_budget_is_on_the_metrics_page() -> None:
    """rotator_graph_write_wait_seconds_total: what the service's own pacing costs, as
    the service wires it (a process alone on SQLite keeps its bucket in memory)."""
    from types import SimpleNamespace

    from rotator.adapters.db import SqlStore, make_engine
    from rotator.daemon import instrument

    store = SqlStore(make_engine("sqlite://"))
    inner = _Dir()
    deps = SimpleNamespace(store=store, directory=inner, probe=object(),
                           secret_store_for=lambda url: object(), certificate_store_for=None)
    metrics = Metrics()
    # 600 a minute: a burst of ten, then one write every 0.1 s.
    instrument(deps, metrics, graph_writes_per_minute=600)  # type: ignore[arg-type]
    for _ in range(13):
        await deps.directory.remove_password("o", "k")
    store.close()
    assert inner.calls == ["remove_password"] * 13
    page = metrics.render().decode()
    waited = [float(line.split()[1]) for line in page.splitlines()
              if line.startswith("rotator_graph_write_wait_seconds_total ")]
    # The three past the burst waited up to 0.1 s each (less if the loop was slow).
    assert waited and 0 < waited[0] <= 0.3 + 1e-6, waited


async def test_counting_wrappers_label_status_and_429() -> None:
    metrics = Metrics()
    directory = CountingDirectory(_Dir(), metrics.record_request)  # type: ignore[arg-type]
    await directory.remove_password("o", "k")
    with pytest.raises(DirectoryError):
        await directory.remove_password("o", "throttled")
    assert (await directory.add_key("o", b"der", "n", "proof")).key_id == "k2"
    await directory.remove_key("o", "k", "proof")
    await directory.list_key_credentials("o")
    await directory.set_key_credentials("o", [])

    class _Probe:
        async def try_secret(self, *args: object) -> TokenOutcome:
            return TokenOutcome(False, error_code="AADSTS7000215")

        async def try_certificate(self, *args: object) -> TokenOutcome:
            return TokenOutcome(True)

    probe = CountingTokenProbe(_Probe(), metrics.record_request)  # type: ignore[arg-type]
    await probe.try_secret("t", "c", SecretValue("s3cr3t-value"), "scope")
    await probe.try_certificate("t", "c", SecretValue("s3cr3t-pem"), "scope")
    text = metrics.render().decode()
    assert 'operation="remove_password",service="graph",status="ok"' in text
    assert 'operation="remove_password",service="graph",status="429"' in text
    assert 'rotator_throttled_requests_total{service="graph"} 1.0' in text
    for op in ("add_key", "remove_key", "list_key_credentials", "set_key_credentials"):
        assert f'operation="{op}",service="graph",status="ok"' in text
    assert 'status="AADSTS7000215"' in text
    assert 'operation="try_certificate",service="token",status="ok"' in text
    assert "s3cr3t-value" not in text and "s3cr3t-pem" not in text


def test_dependency_health_tells_outages_from_answers() -> None:
    clock = [1_900_000_000.0]
    health = DependencyHealth(clock=lambda: clock[0])
    health.record("graph", "list_applications", "ok")
    health.record("graph", "remove_password", "503")
    clock[0] += 5
    health.record("graph", "remove_password", "503")
    health.record("graph", "get_application", "404")  # an answer: Graph is there
    health.record("keyvault", "set_secret", "unreachable")
    health.record("token", "try_secret", "AADSTS7000215")  # not propagated yet: an answer
    states = health.states()
    graph = states["graph"].to_json()
    assert graph["status"] == "degraded"
    failing = graph["failing_operations"]
    assert isinstance(failing, dict)
    assert failing["remove_password"]["consecutive_failures"] == 2
    assert failing["remove_password"]["since"] == "2030-03-17T17:46:40+00:00"
    assert states["keyvault"].status == "failing"
    assert states["token"].to_json() == {"status": "ok", "last_seen": "2030-03-17T17:46:45+00:00"}
    health.record("graph", "remove_password", "ok")
    health.record("token", "try_secret", "503")
    assert health.states()["graph"].to_json().get("failing_operations") is None
    assert health.states()["token"].status == "failing"
    # the metrics recorder feeds it
    metrics = Metrics()
    metrics.record_request("keyvault", "get_secret", "503")
    assert metrics.dependencies.states()["keyvault"].status == "failing"

