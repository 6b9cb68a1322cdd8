"""The service as a real process: `rotator serve` started against the emulated tenant,
waited for, stopped; apps made due; consumers' view of a secret; a watch on the
tenant that notes any moment an app had no valid secret.

The service tests use these, and so do the benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from rotator.adapters.db import SqlStore
from rotator.adapters.db.session import make_engine
from rotator.config import default_secret_name
from rotator.domain.rotation import Rotation
from rotator.domain.secret_value import SecretValue
from rotator.emulator.model import Application
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.tenant import make_secret_text
from tests.support.paths import REPO


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


def start_serve(emu: RunningEmulator, db_url: str, policy: Path, log_path: Path,
                *, env_file: Path | None = None,
                extra_env: dict[str, str] | None = None) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AZURE_"))}
    env.update({
        "ROTATOR_ENV_FILE": str(env_file or emu.env_file),
        "ROTATOR_DATABASE_URL": db_url,
        "ROTATOR_CONFIG": str(policy),
        "ROTATOR_LOG_FORMAT": "json",
        "ROTATOR_LOG_LEVEL": "INFO",
    })
    env.update(extra_env or {})
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


def open_store(url: str) -> SqlStore:
    return SqlStore(make_engine(url, poolclass=sa.pool.NullPool))


@contextmanager
def serving(emu: RunningEmulator, db_url: str, policy: Path, log_path: Path,
            extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`start_serve`, and whatever happens in the block, no process is left behind."""
    served = start_serve(emu, db_url, policy, log_path, extra_env=extra_env)
    try:
        yield served
    finally:
        if served.alive():
            try:
                served.stop()
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait()


def seed_consumer_secret(emu: RunningEmulator, app: Application, value: str) -> str:
    """Give an app the consumer secret a real one has: its current secret, tagged."""
    cred = emu.tenant.match_secret(app, value)
    assert cred is not None
    name = default_secret_name(app.app_id)
    emu.tenant.vault.set(name, value, content_type="text/plain",
                         tags={"managed-by": "rotator", "app_id": app.app_id,
                               "key_id": cred.key_id})
    return name


def finish_propagation(emu: RunningEmulator, app_id: str) -> None:
    """Every replica of the token service now knows every secret of the app."""
    for cred in emu.tenant.passwords(app_id):
        cred.visible_at = ()


def latest_rotation(store: SqlStore, app_id: str) -> Rotation | None:
    found = store.list_rotations(app_id=app_id, limit=1)
    return found[0] if found else None


class CredentialWatch:
    """Samples apps in the tenant from a thread while a test runs: notes every moment an
    app had no valid secret, and every secret value that ever existed (to grep logs for)."""

    def __init__(self, emu: RunningEmulator, app_ids: Sequence[str], every: float = 0.05
                 ) -> None:
        self._emu = emu
        self._app_ids = list(app_ids)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credential-watch", daemon=True)
        self.gaps: list[str] = []
        self.values: set[str] = set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._every)

    def sample(self) -> None:
        now = datetime.now(UTC)
        for app_id in self._app_ids:
            creds = self._emu.tenant.passwords(app_id)
            self.values.update(c.secret_text for c in creds)
            if not any(c.start <= now < c.end for c in creds):
                self.gaps.append(f"{app_id} had no valid secret at {now.isoformat()}")
        for name in self._emu.tenant.vault.names():
            self.values.update(v.value for v in self._emu.tenant.vault.versions(name.name))

    def __enter__(self) -> CredentialWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def gets_token(emu: RunningEmulator, app_id: str, value: str) -> bool:
    """Whether a client-credentials request with this secret gets a token now (what a
    consumer holding it would do), through the same azure-identity path verify uses."""
    from rotator.adapters.token_probe import AzureIdentityTokenProbe

    probe = AzureIdentityTokenProbe(authority_host=emu.base_url, ca_bundle=str(emu.ca_file))
    outcome = asyncio.run(probe.try_secret(
        emu.tenant.tenant_id, app_id, SecretValue(value), "https://graph.microsoft.com/.default"
    ))
    return outcome.ok
