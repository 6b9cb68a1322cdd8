"""Retiring on evidence with real parts: the emulated tenant over HTTPS, the rotator command
as a process, SQLite and PostgreSQL, and a real consumer process that read its secret once
and asks for a token every second, restarted by a command hook after promote.

The consumer must never be refused, and the old credential must go only after it moved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.db import SqlStore
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.support.emulated import (
    ManagedApp,
    make_app,
    rotator_env,
    run_rotator,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LAG = timedelta(seconds=2)
GRACE_HOURS = 0.001  # 3.6 s
QUIET_HOURS = 0.003  # 10.8 s


@dataclass
class Consumer:
    """The consumer process and its supervisor (which starts it again when it ends)."""

    env: dict[str, str]
    args: list[str]
    log: Path
    pid_file: Path
    stop: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def supervise(self) -> None:
        while not self.stop.is_set():
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.consumer", *self.args],
                env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.starts += 1
            while self.process.poll() is None and not self.stop.is_set():
                time.sleep(0.05)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def tokens(self, key_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries()
                if e["event"] == "token" and (key_id is None or e["key_id"] == key_id)]


@pytest.fixture
def short_lag(emu: RunningEmulator) -> Iterator[None]:
    saved = emu.state.signins.lag
    emu.state.signins.lag = LAG
    yield
    emu.state.signins.lag = saved


def _policy(path: Path, app: ManagedApp, hook_argv: list[str] | None) -> Path:
    lines = ["[defaults]", "verify_successes = 3", "verify_timeout_seconds = 60",
             f"grace_hours = {GRACE_HOURS}", 'retire_when = "unused"',
             f"quiet_hours = {QUIET_HOURS}", "retire_max_wait_hours = 1",
             "[[app]]", f'app_id = "{app.app_id}"', f'secret_name = "{app.secret_name}"']
    if hook_argv is not None:
        lines += ["[[app.hook]]", 'type = "command"', f"argv = {json.dumps(hook_argv)}",
                  'events = ["promoted"]', "timeout_seconds = 20"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start_consumer(emu: RunningEmulator, app: ManagedApp, tmp: Path) -> Consumer:
    # The consumer secret holds the old credential, as it did before rotator took over.
    emu.tenant.vault.set(app.secret_name, app.old_secret, content_type="text/plain",
                         tags={"key_id": app.old_key_id})
    env = {**rotator_env(emu, "sqlite://", None), "PYTHONPATH": str(REPO)}
    consumer = Consumer(env, [emu.env["ROTATOR_VAULT_URL"], app.secret_name, app.app_id,
                              str(tmp / "consumer.log"), str(tmp / "consumer.pid")],
                        tmp / "consumer.log", tmp / "consumer.pid")
    threading.Thread(target=consumer.supervise, daemon=True).start()
    _until(lambda: len(consumer.tokens(app.old_key_id)) >= 3, 60, "the consumer never started")
    return consumer


def _until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(what)


def _rotation(database_url: str, app: ManagedApp) -> Rotation:
    store = SqlStore.from_url(database_url)
    try:
        [rotation] = store.list_rotations(app_id=app.app_id)
        return rotation
    finally:
        store.close()


def _removal(database_url: str, rotation: Rotation) -> tuple[datetime, str]:
    store = SqlStore.from_url(database_url)
    try:
        [event] = [e for e in store.history(rotation_id=rotation.id)
                   if e.step == "retire" and "removed" in e.message]
        return event.at, str(event.details["retired_by"])
    finally:
        store.close()


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


def test_a_consumer_restarted_by_a_hook_is_never_refused_and_the_old_key_waits_for_it(
    emu: RunningEmulator, database_url: str, tmp_path: Path, short_lag: None
) -> None:
    app = make_app(emu)
    consumer = _start_consumer(emu, app, tmp_path)
    kill = [sys.executable, "-c",
            "import os, signal, sys; os.kill(int(open(sys.argv[1]).read()), signal.SIGTERM)",
            str(consumer.pid_file)]
    env = rotator_env(emu, database_url, _policy(tmp_path / "policy.toml", app, kill))
    try:
        first = run_rotator(["rotate", "--app", app.app_id], env)
        assert first.returncode == 0, first.stderr
        promoted = _rotation(database_url, app)
        assert promoted.state is RotationState.PROMOTED and promoted.promoted_at is not None
        new_key = promoted.new_key_id
        assert new_key is not None
        # The hook restarted the consumer; it read the new secret once and uses it.
        _until(lambda: len(consumer.tokens(new_key)) >= 2, 60, "the consumer never moved")
        # Drive retirement the way an admin (or the daemon) would: again and again.
        deadline = time.monotonic() + 120
        while _rotation(database_url, app).state is RotationState.PROMOTED:
            assert time.monotonic() < deadline, "the old credential was never retired"
            again = run_rotator(["rotate", "--app", app.app_id], env)
            assert again.returncode == 0, again.stderr
            time.sleep(1)
        done = _rotation(database_url, app)
        assert done.state is RotationState.COMPLETED
        assert app.old_key_id not in [p.key_id for p in emu.tenant.passwords(app.app_id)]
        time.sleep(3)  # the consumer keeps working after the old key is gone
    finally:
        consumer.stop.set()
    entries = consumer.entries()
    refused = [e for e in entries if e["event"] == "refused"]
    assert refused == [], refused
    removed_at, rule = _removal(database_url, done)
    assert rule.startswith("unused: the new credential signed in at")
    assert done.promoted_at is not None
    old_tokens, new_tokens = consumer.tokens(app.old_key_id), consumer.tokens(new_key)
    moved_at = _at(new_tokens[0])
    last_old = _at(old_tokens[-1])
    assert consumer.starts >= 2 and last_old < moved_at < removed_at
    assert removed_at - last_old >= timedelta(hours=QUIET_HOURS) - LAG
    assert any(_at(e) > removed_at for e in new_tokens)
    print(f"\nconsumer moved {(moved_at - done.promoted_at).total_seconds():.1f} s after "
          f"promote; old credential removed {(removed_at - done.promoted_at).total_seconds():.1f}"
          f" s after promote ({(removed_at - last_old).total_seconds():.1f} s after its last "
          f"use; grace {GRACE_HOURS * 3600:.1f} s, quiet {QUIET_HOURS * 3600:.1f} s)")


def test_a_consumer_that_never_moves_holds_the_retirement(
    emu: RunningEmulator, database_url: str, tmp_path: Path, short_lag: None
) -> None:
    app = make_app(emu)
    consumer = _start_consumer(emu, app, tmp_path)  # no hook: nobody restarts it
    env = rotator_env(emu, database_url, _policy(tmp_path / "policy.toml", app, None))
    try:
        assert run_rotator(["rotate", "--app", app.app_id], env).returncode == 0
        time.sleep(GRACE_HOURS * 3600 + LAG.total_seconds() + 1)
        assert run_rotator(["rotate", "--app", app.app_id], env).returncode == 0
        held = _rotation(database_url, app)
        assert held.state is RotationState.PROMOTED and held.held is not None
        status = run_rotator(["status"], env)
        assert "held:" in status.stdout, status.stdout
        assert app.old_key_id in [p.key_id for p in emu.tenant.passwords(app.app_id)]
        # An admin decides to retire it anyway: the consumer is then refused, as it must be.
        forced = run_rotator(["rotate", "--app", app.app_id, "--retire-now"], env)
        assert forced.returncode == 0, forced.stderr
    finally:
        consumer.stop.set()
    done = _rotation(database_url, app)
    assert done.state is RotationState.COMPLETED
    assert _removal(database_url, done)[1] == "admin decision (--retire-now)"


@pytest.fixture(scope="module")
def emu_without_audit_log(tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[RunningEmulator]:
    with start_emulator(apps=2, seed=5, propagation_seconds=1.0, audit_log=False,
                        workdir=tmp_path_factory.mktemp("emu-no-audit")) as running:
        yield running


def test_without_audit_log_read_all_the_grace_rule_retires_and_says_so(
    emu_without_audit_log: RunningEmulator, database_url: str, tmp_path: Path
) -> None:
    emu = emu_without_audit_log
    app = make_app(emu)
    env = rotator_env(emu, database_url, _policy(tmp_path / "policy.toml", app, None))
    assert run_rotator(["rotate", "--app", app.app_id], env).returncode == 0
    time.sleep(GRACE_HOURS * 3600 + 0.5)
    again = run_rotator(["rotate", "--app", app.app_id], env)
    assert again.returncode == 0, again.stderr
    done = _rotation(database_url, app)
    assert done.state is RotationState.COMPLETED
    rule = _removal(database_url, done)[1]
    assert rule.startswith("grace (fallback: the credential usage report answered HTTP 403")
    assert done.rule_fallback is not None
    assert "usage report unavailable" in again.stdout + again.stderr
