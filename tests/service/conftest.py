"""The service as a real process: `rotator serve` subprocesses against the emulated tenant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from rotator.adapters.db import migrate
from rotator.adapters.db.repo import Store
from rotator.adapters.db.session import make_engine
from rotator.emulator.model import Application
from rotator.emulator.runner import RunningEmulator, start_emulator
from rotator.emulator.tenant import make_secret_text
from tests.db.conftest import pg_admin_url, throwaway_pg_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with start_emulator(apps=5, seed=21, workdir=tmp_path_factory.mktemp("emu")) as running:
        yield running


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


def admin_engine() -> sa.Engine:
    return make_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def set_connections_allowed(db_url: str, allowed: bool) -> None:
    """Make a database unreachable (and drop its connections), or reachable again."""
    name = sa.make_url(db_url).database
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        ))
        if not allowed:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ), {"name": name})
    engine.dispose()


def make_due_apps(emu: RunningEmulator, count: int, prefix: str) -> list[tuple[Application, str]]:
    """Apps owned by the rotator whose only secret ends in 5 days (due)."""
    end = datetime.now(UTC) + timedelta(days=5)
    out = []
    for i in range(count):
        value = make_secret_text()
        app = emu.tenant.create_app(f"{prefix}-{i:04d}", secrets=[(value, end)])
        out.append((app, value))
    return out


def write_policy(path: Path, vault_url: str, app_ids: Sequence[str], **daemon: object) -> Path:
    settings: dict[str, object] = {
        "grace_hours": 0,
        "verify_successes": 1,
        "verify_timeout_seconds": 120,
        "scan_interval_minutes": 0.05,
        "reconcile_interval_seconds": 1,
        "lease_seconds": 5,
        "max_concurrent_rotations": 8,
        "graph_writes_per_minute": 30_000,
    }
    settings.update(daemon)
    lines = ["[defaults]", f'vault_url = "{vault_url}"']
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    for app_id in app_ids:
        lines += ["[[app]]", f'app_id = "{app_id}"']
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url(path), timeout=10)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def start_serve(emu: RunningEmulator, db_url: str, policy: Path, log_path: Path) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AZURE_"))}
    env.update({
        "ROTATOR_ENV_FILE": str(emu.env_file),
        "ROTATOR_DATABASE_URL": db_url,
        "ROTATOR_CONFIG": str(policy),
        "ROTATOR_LOG_FORMAT": "json",
        "ROTATOR_LOG_LEVEL": "INFO",
    })
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
    )
    served = Served(proc, log_path)
    wait_for(lambda: _port_of(served) is not None or not served.alive(), 60, "serve to start")
    assert served.alive(), served.log()[-3000:]
    served.port = _port_of(served)
    return served


def _port_of(served: Served) -> int | None:
    for line in served.log().splitlines():
        if '"rotator serving"' in line:
            port = json.loads(line).get("port")
            return int(port) if port else None
    return None


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def open_store(url: str) -> Store:
    return Store(make_engine(url, poolclass=sa.pool.NullPool))
