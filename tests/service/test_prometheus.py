"""A real Prometheus scrapes `rotator serve` and evaluates rotator's alert rules.

The rules are deploy/prometheus/rotator-rules.yaml with one change: every `for:` is
cut to 0 s so the test is bounded (the promtool unit tests in tests/deploy check the
durations). Prometheus scrapes and evaluates every second, on loopback, with its
storage in a temporary directory; the test reads the firing alerts from its HTTP API.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from rotator.adapters.db import migrate
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.tenant import make_secret_text
from tests.support.deploy import DEPLOY
from tests.support.serve import serving, wait_for, write_policy
from tests.support.tools import require_tool

RULES = DEPLOY / "prometheus" / "rotator-rules.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def prometheus(tmp: Path, target_port: int) -> Iterator[str]:
    """A Prometheus server (not the system's service) scraping 127.0.0.1:target_port."""
    binary = require_tool("prometheus", package="prometheus")
    rules = tmp / "rules.yaml"
    rules.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", RULES.read_text()))
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\n"
        "scrape_configs:\n  - job_name: rotator\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, "Prometheus to be ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def firing(base: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = httpx.get(f"{base}/api/v1/alerts", timeout=5).json()[
        "data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def test_prometheus_fires_the_expired_and_the_down_alerts(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    expired = emu.tenant.create_app(
        "prom-expired", owned_by_rotator=False,
        secrets=[(make_secret_text(), datetime.now(UTC) - timedelta(days=2))],
    )
    db_url = f"sqlite:///{tmp_path}/rotator.db"
    migrate.upgrade(db_url)
    policy = write_policy(tmp_path / "policy.toml", emu.base_url, [], scan_interval_minutes=60)
    with serving(emu, db_url, policy, tmp_path / "serve.log") as served:
        wait_for(lambda: served.get("/readyz").status_code == 200, 60, "the first scan")
        assert served.port is not None
        with prometheus(tmp_path, served.port) as base:
            def expired_fires() -> bool:
                return any(a["labels"]["alertname"] == "RotatorCredentialExpired"
                           and a["labels"].get("app_id") == expired.app_id
                           for a in firing(base))

            wait_for(expired_fires, 60, "RotatorCredentialExpired for the expired secret")
            (alert,) = [a for a in firing(base)
                        if a["labels"]["alertname"] == "RotatorCredentialExpired"
                        and a["labels"]["app_id"] == expired.app_id]
            assert alert["labels"]["managed"] == "false"
            assert alert["labels"]["severity"] == "warning"
            assert alert["annotations"]["runbook_url"].endswith(
                "operations.md#runbook-credential-expired")
            names = {a["labels"]["alertname"] for a in firing(base)}
            assert "RotatorDown" not in names and "RotatorScanStale" not in names

            assert served.stop() == 0
            wait_for(lambda: any(a["labels"]["alertname"] == "RotatorDown"
                                 for a in firing(base)), 60, "RotatorDown once stopped")
