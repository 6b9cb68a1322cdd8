"""Large tenants and the ``rotator emulator`` command as a real process."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rotator.adapters import sdk_clients
from rotator.emulator.runner import start_emulator
from tests.emulator.helpers import token_for


@pytest.mark.slow
def test_hundred_thousand_apps_seed_and_page(tmp_path: Path) -> None:
    with start_emulator(apps=100_000, seed=1, workdir=tmp_path) as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_file))
        with httpx.Client(base_url=emu.base_url, verify=context, timeout=60) as http:
            token = token_for(
                http,
                emu,
                emu.env["AZURE_CLIENT_ID"],
                emu.env["AZURE_CLIENT_SECRET"],
                "https://graph.microsoft.com/.default",
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            url: str | None = (
                "/v1.0/applications?$top=999&$select=id,appId,displayName,"
                "passwordCredentials,keyCredentials"
            )
            seen = credentials = 0
            while url:
                page = http.get(url, headers=headers).json()
                seen += len(page["value"])
                credentials += sum(
                    len(a["passwordCredentials"]) + len(a["keyCredentials"]) for a in page["value"]
                )
                url = page.get("@odata.nextLink")
    # The rotator, the web API and its two clients, the tenant admin, three apps open to
    # personal accounts, four apps of the wider estate (secrets on their service
    # principals, federated credentials), the v2 API, rotator's own API (api://rotator)
    # with its reader and admin clients, plus the seeded apps.
    assert seen == 100_016
    assert credentials > 200_000


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"emulator exited early: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError("env file never appeared")


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line)
    return {key: value for key, value in pairs}


async def test_cli_runs_until_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "emulator.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from rotator.cli.main import main; main()",
            "emulator",
            "--port",
            "0",
            "--env-file",
            str(env_file),
            "--apps",
            "5",
            "--seed",
            "11",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_for(env_file, proc)
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = _read_env(env_file)
        assert list(env) == [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "ROTATOR_AUTHORITY_HOST",
            "ROTATOR_GRAPH_URL",
            "ROTATOR_VAULT_URL",
            "ROTATOR_CA_BUNDLE",
            "EMULATOR_ADMIN_CLIENT_ID",
            "EMULATOR_ADMIN_CLIENT_SECRET",
        ]
        assert Path(env["ROTATOR_CA_BUNDLE"]).parent == tmp_path
        async with sdk_clients.async_secret_credential(
            env["AZURE_TENANT_ID"],
            env["AZURE_CLIENT_ID"],
            env["AZURE_CLIENT_SECRET"],
            authority_host=env["ROTATOR_AUTHORITY_HOST"],
            ca_bundle=env["ROTATOR_CA_BUNDLE"],
        ) as cred:
            graph = sdk_clients.make_graph_client(
                cred, graph_url=env["ROTATOR_GRAPH_URL"], ca_bundle=env["ROTATOR_CA_BUNDLE"]
            )
            page = await graph.applications.get()
        # 5 seeded, the rotator, 3 walkthrough apps, the admin, 3 open to personal accounts,
        # 4 of the wider estate, the v2 API, rotator's own API and its two clients.
        assert len(page.value) == 21
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "AZURE_CLIENT_SECRET=***" in out
    assert env["AZURE_CLIENT_SECRET"] not in out + err
    assert "EMULATOR_ADMIN_CLIENT_SECRET=***" in out
    assert env["EMULATOR_ADMIN_CLIENT_SECRET"] not in out + err
