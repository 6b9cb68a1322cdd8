"""`rotator demo` as a subprocess: exits 0 and prints the summary."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.slow


def test_demo_rotates_and_summarises() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AZURE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "rotator", "demo"], env=env, cwd=str(REPO),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for heading in ("Due when the demo started:", "Rotated:", "Retired", "Unmanaged and expiring",
                    "rotator status", "rotator history", "/metrics", "Invariants hold"):
        assert heading in out
    assert "myclient" in out
    assert out.count("completed  new secret") >= 3
    assert "waited" in out and "for propagation" in out
    # The walkthrough client's consumer moved before its old credential went, never refused.
    assert "Consumer of myclient" in out and ", 0 refused;" in out
    assert "by the rule: unused: the new credential signed in at" in out
    # The consumer nothing restarts keeps using its old credential: held, not removed.
    assert "never reloaded: nothing restarts it" in out
    assert "retirement held, the old credential kept" in out
    assert out.count(", 0 refused;") == 2
    # Nothing but the demo's own lines: the scheduler's warnings are not for this screen.
    assert "Execution of job" not in done.stdout + done.stderr
