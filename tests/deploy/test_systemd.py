"""The systemd unit: hardening, state directory, migration before start."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rotator.config import SETTINGS_ENV, read_env_file
from tests.support.deploy import DEPLOY
from tests.support.tools import require_tool

UNIT = DEPLOY / "systemd" / "rotator.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "rotator.env.example"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_hardening() -> None:
    d = _directives()
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "StateDirectory": "rotator",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert d.get(key) == [value], key
    assert d["CapabilityBoundingSet"] == [""]


def test_migrates_before_serving() -> None:
    d = _directives()
    assert d["ExecStartPre"] == ["/opt/rotator/bin/rotator db upgrade"]
    assert d["ExecStart"] == ["/opt/rotator/bin/rotator serve"]
    env = dict(v.split("=", 1) for v in d["Environment"])
    assert env["ROTATOR_DATABASE_URL"].startswith("sqlite:////var/lib/rotator/")
    assert d["WorkingDirectory"] == ["/var/lib/rotator"]
    assert {k for k in env if k.startswith(("ROTATOR_", "AZURE_"))} <= set(SETTINGS_ENV.values())


def test_env_example_names_real_settings_and_no_secret() -> None:
    values = read_env_file(ENV_EXAMPLE)
    assert set(values) <= set(SETTINGS_ENV.values())
    assert SETTINGS_ENV["client_secret"] not in values
    assert SETTINGS_ENV["database_url"] not in values  # the unit's SQLite default applies


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", package="systemd")
    # verify checks that the executables exist: point the unit at a stand-in.
    fake = tmp_path / "rotator"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / "rotator.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/rotator/bin/rotator", str(fake)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines()
        if "rotator.service" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
