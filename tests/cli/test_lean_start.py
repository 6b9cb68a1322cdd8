"""The read-only commands start lean: a fresh `rotator status`, `rotator history` or
`rotator --help` imports nothing it does not use (no Alembic on a current database, no
Graph or Azure SDK, no web server, scheduler or logging stack). Checked by module, not
by time, so the machine's load cannot make it flaky."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotator.adapters.db import migrate
from rotator.cli.app import collector_paused

TENANT = "11111111-1111-1111-1111-111111111111"

# What only rotations, scans, the service, migrations or log set-up need.
NOT_FOR_READS = frozenset({
    "alembic", "mako", "msgraph", "msgraph_core", "kiota_abstractions", "kiota_http",
    "azure", "msal", "httpx", "aiohttp", "starlette", "uvicorn", "apscheduler",
    "cryptography", "structlog", "rich", "pygments", "prometheus_client",
})
# --help reads neither settings nor the database.
NOT_FOR_HELP = NOT_FOR_READS | {"sqlalchemy", "pydantic", "pydantic_settings", "asyncio"}

# Runs the command in this process, then names what it imported.
PROBE = (
    "import sys, runpy\n"
    "sys.argv = ['rotator', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('rotator', run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "print('MODULES', *sorted({m.split('.')[0] for m in sys.modules}), file=sys.stderr)\n"
)


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate.upgrade(url)
    env = {**os.environ, "ROTATOR_DATABASE_URL": url, "ROTATOR_TENANT_ID": TENANT}
    env.pop("ROTATOR_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["history"],
                                  ["history", "--json", "--since", "7d"]])
def test_read_only_commands_import_only_what_they_use(args: list[str],
                                                      tmp_path: Path) -> None:
    imported = _imported(args, tmp_path)
    assert "sqlalchemy" in imported  # the probe did run the command
    assert imported & NOT_FOR_READS == set()


def test_help_imports_neither_the_database_nor_the_settings(tmp_path: Path) -> None:
    imported = _imported(["--help"], tmp_path)
    assert "click" in imported
    assert imported & NOT_FOR_HELP == set()


def test_the_collector_is_paused_only_for_the_start_up() -> None:
    assert gc.isenabled()
    with pytest.raises(SystemExit), collector_paused():
        assert not gc.isenabled()
        raise SystemExit(1)  # a command that aborts while starting up
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
